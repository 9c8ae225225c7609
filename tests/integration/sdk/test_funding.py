"""A trader's own funding through the SDK and the real edge: the deposit is listed, a
withdrawal debits the available balance once (a retry with its transfer_id returns the
original), and one beyond the balance is refused with its reason."""

from __future__ import annotations

from decimal import Decimal

import pytest
from exchange_sdk import RejectedError, TransferKind, new_idempotency_key
from exchange_sdk.models import TransferStatus

from tests.integration.sdk.conftest import CAROL, SdkEdge


def test_withdraw_and_list_transfers(sdk_edge: SdkEdge) -> None:
    with sdk_edge.client(CAROL) as client:
        deposits = client.list_transfers(asset="BTC", kind="deposit").items
        assert [(t.kind, t.amount) for t in deposits] == [(TransferKind.DEPOSIT, Decimal("10"))]
        before = client.get_balances("BTC")["BTC"].available

        transfer_id = new_idempotency_key()
        withdrawn = client.withdraw("BTC", "0.25", reference="bc1-address", transfer_id=transfer_id)
        assert (withdrawn.status, withdrawn.amount) == (TransferStatus.COMPLETED, Decimal("0.25"))
        again = client.withdraw("BTC", "0.25", reference="bc1-address", transfer_id=transfer_id)
        assert again == withdrawn
        assert client.get_transfer(transfer_id) == withdrawn
        assert before - client.get_balances("BTC")["BTC"].available == Decimal("0.25")

        with pytest.raises(RejectedError) as refused:
            client.withdraw("BTC", "1000", reference="bc1-address")
        assert refused.value.reason == "INSUFFICIENT_BALANCE"
