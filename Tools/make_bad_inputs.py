#!/usr/bin/env python3
"""Regression inputs for the parsers of untrusted input, one folder per fuzz target under
Tests/Fixtures/bad/fuzz/TARGET/. Each input once crashed, hung or over-allocated Tessera;
Tests/CLITests/RegressionInputTests.swift runs every one through the command that reads it
(it must exit 0 or 2, never die of a signal), and Tools/fuzz.sh replays them on every run.

Run: python3 Tools/make_bad_inputs.py   (deterministic; plain Python, no venv needed)
"""
import io
import os
import struct
import tarfile
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "bad", "fuzz")


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def zip64_entry_count():
    """A zip whose zip64 end record claims 2^62 entries (Tessera reserved room for them: TBs)."""
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/version", b"3\n")
    data = bytearray(body.getvalue())
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    z64_at = eocd
    record = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1 << 62, 1 << 62, cd_size, cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, z64_at, 1)
    return bytes(data[:eocd]) + record + locator + bytes(data[eocd:])


def pickled_tensor(shape):
    """torch._utils._rebuild_tensor_v2(storage, 0, shape, strides, False), ints as LONG1."""
    def long1(v):
        return b"\x8a\x08" + struct.pack("<q", v)

    def tup(vs):
        return b"(" + b"".join(long1(v) for v in vs) + b"t"
    storage = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + storage + long1(0) + tup(shape)
            + tup([1] * len(shape)) + b"\x89tR.")


def overflowing_shape():
    """A torch.save archive whose tensor's shape overflows an element count (Tessera trapped)."""
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled_tensor([1 << 40, 1 << 40]))
        z.writestr("archive/data/0", b"\x00" * 16)
        z.writestr("archive/version", b"3\n")
    return body.getvalue()


def negative_tar_size():
    """A .nemo tar whose member size is -1024 (Tessera read the same header for ever)."""
    header = bytearray(512)
    header[0:16] = b"model_config.yml"
    header[100:108] = b"0000644\x00"
    header[124:136] = b"-0000002000\x00"  # -1024: the next header would be this one again
    header[136:148] = b"00000000000\x00"
    header[156] = ord("0")
    header[257:263] = b"ustar\x00"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header) + bytes(1024)


write("FuzzZip", "zip64_entry_count.ckpt", zip64_entry_count())
write("FuzzZip", "overflowing_shape.ckpt", overflowing_shape())
write("FuzzTar", "negative_member_size.nemo", negative_tar_size())
write("FuzzScoringJSONL", "deep_nesting.jsonl", b"[" * 100000 + b"\n")
