"""Our association PDUs against pynetdicom's encoder and decoder (an independent implementation of PS3.8)."""

from __future__ import annotations

import pytest
from pydicom.uid import UID
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, A_P_ABORT, MaximumLengthNotification
from pynetdicom.presentation import PresentationContext

from xnat_uploader.core.transfer import acse

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT, IMPLICIT, JPEG = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"
IMPL_UID = "2.25.123456789"


def test_associate_rq_is_read_by_pynetdicom_as_written() -> None:
    contexts = [(1, CT, [EXPLICIT]), (3, MR, [IMPLICIT, EXPLICIT]), (255, CT, [JPEG])]
    pdu = acse.associate_rq("XNAT", "UPLOADER", "1.2.840.10008.3.1.1.1", contexts, max_pdu=1 << 20,
                            implementation_uid=IMPL_UID, implementation_version="XNATUPL_0.1.0")  # fmt: skip
    rq = A_ASSOCIATE_RQ()
    rq.decode(pdu)
    assert rq.pdu_length == len(pdu) - 6
    assert rq.called_ae_title == "XNAT"
    assert rq.calling_ae_title == "UPLOADER"
    assert rq.application_context_name == "1.2.840.10008.3.1.1.1"
    got = [(c.context_id, c.abstract_syntax, list(c.transfer_syntax)) for c in rq.presentation_context]
    assert got == contexts
    user = rq.user_information
    assert user.maximum_length == 1 << 20
    assert user.implementation_class_uid == IMPL_UID
    assert user.implementation_version_name == "XNATUPL_0.1.0"


def _pynetdicom_ac(results: list[tuple[int, int, str]], max_len: int | None) -> bytes:
    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title, prim.called_ae_title = "UPLOADER", "XNAT"
    prim.result = 0
    contexts = []
    for context_id, result, ts in results:
        ctx = PresentationContext()
        ctx.context_id = context_id
        ctx.result = result
        ctx.transfer_syntax = [UID(ts)]
        contexts.append(ctx)
    prim.presentation_context_definition_results_list = contexts
    info = []
    if max_len is not None:
        item = MaximumLengthNotification()
        item.maximum_length_received = max_len
        info.append(item)
    prim.user_information = info
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(prim)
    return ac.encode()


@pytest.mark.parametrize("max_len", [16384, 0, None])
def test_associate_ac_from_pynetdicom(max_len: int | None) -> None:
    pdu = _pynetdicom_ac([(1, 0, EXPLICIT), (3, 3, IMPLICIT), (5, 0, JPEG)], max_len)
    assert pdu[0] == 0x02
    ac = acse.parse_associate_ac(pdu[6:])
    assert ac.results == {1: (0, EXPLICIT), 3: (3, IMPLICIT), 5: (0, JPEG)}
    assert ac.max_pdu == (max_len or 0)


def test_associate_rj_and_abort_from_pynetdicom() -> None:
    prim = A_ASSOCIATE()
    prim.result, prim.result_source, prim.diagnostic = 1, 1, 7
    rj = A_ASSOCIATE_RJ()
    rj.from_primitive(prim)
    pdu = rj.encode()
    assert pdu[0] == 0x03
    assert acse.parse_associate_rj(pdu[6:]) == (1, 1, 7)

    abort = A_P_ABORT()
    abort.provider_reason = 2
    rq = A_ABORT_RQ()
    rq.from_primitive(abort)
    pdu = rq.encode()
    assert pdu[0] == 0x07
    assert acse.parse_abort(pdu[6:]) == (2, 2)


@pytest.mark.parametrize(
    "body",
    [b"\x00" * 10, b"\x00\x01\x00\x00" + b"A" * 64 + b"\x21\x00\x00\x10\x01"],
    ids=["short", "item-past-end"],
)
def test_malformed_ac_is_a_pdu_error(body: bytes) -> None:
    with pytest.raises(acse.PduError):
        acse.parse_associate_ac(body)
