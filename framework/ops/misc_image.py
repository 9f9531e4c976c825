"""ImageDecoder (opset 20). Uncompressed-friendly formats are decoded here (PNG, BMP, PNM, baseline TIFF);
other formats (JPEG, WebP, JPEG 2000) use Pillow when it is installed, else raise a KernelError."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import KernelError
from .registry import op


def _png(data: bytes) -> np.ndarray:
    pos, idat, palette, hdr = 8, [], None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if hdr is None:
        raise KernelError("ImageDecoder: PNG without IHDR")
    width, height, depth, color, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if depth != 8 or interlace or channels is None:
        raise KernelError(f"ImageDecoder: PNG with bit depth {depth}, color type {color}, interlace "
                          f"{interlace} is not supported")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, 1 + width * channels)
    rows = np.zeros((height, width * channels), np.int32)
    prev = np.zeros(width * channels, np.int32)
    bpp = channels
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind in (0, 2):
            cur = (line + (prev if kind == 2 else 0)) % 256
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) % 256
        else:  # Average / Paeth depend on the reconstructed left pixel: go pixel by pixel
            cur = line.copy()
            for x in range(0, line.size, bpp):
                a = cur[x - bpp:x] if x else np.zeros(bpp, np.int32)
                b, c = prev[x:x + bpp], prev[x - bpp:x] if x else np.zeros(bpp, np.int32)
                if kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                cur[x:x + bpp] = (line[x:x + bpp] + pred) % 256
        rows[y], prev = cur, cur
    img = rows.astype(np.uint8).reshape(height, width, channels)
    if color == 3:
        if palette is None:
            raise KernelError("ImageDecoder: palette PNG without PLTE")
        img = palette[img[..., 0]]
    return img


def _bmp(data: bytes) -> np.ndarray:
    offset, = struct.unpack("<I", data[10:14])
    width, height, _, bpp, compression = struct.unpack("<iiHHI", data[18:34])
    if bpp not in (24, 32) or compression not in (0, 3):
        raise KernelError(f"ImageDecoder: BMP with {bpp} bits per pixel / compression {compression}")
    step = bpp // 8
    stride = (width * step + 3) // 4 * 4
    rows = np.frombuffer(data, np.uint8, count=stride * abs(height), offset=offset)
    rows = rows.reshape(abs(height), stride)
    img = rows[:, :width * step].reshape(abs(height), width, step)[..., 2::-1]  # BGR(A) -> RGB
    return img[::-1] if height > 0 else img  # positive height: stored bottom-up


def _pnm(data: bytes) -> np.ndarray:
    tokens, pos = [], 2
    while len(tokens) < 3:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        tokens.append(int(data[pos:end]))
        pos = end
    width, height, maxval = tokens
    if maxval > 255:
        raise KernelError("ImageDecoder: 16-bit PNM is not supported")
    channels = 3 if data[:2] == b"P6" else 1
    img = np.frombuffer(data, np.uint8, count=width * height * channels, offset=pos + 1)
    return img.reshape(height, width, channels)


def _tiff(data: bytes) -> np.ndarray:
    end = "<" if data[:2] == b"II" else ">"
    ifd, = struct.unpack(end + "I", data[4:8])
    count, = struct.unpack(end + "H", data[ifd:ifd + 2])
    tags = {}
    for i in range(count):
        tag, kind, n, value = struct.unpack(end + "HHI4s", data[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
        fmt, size = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4)}.get(kind, ("I", 4))
        raw = value if n * size <= 4 else data[struct.unpack(end + "I", value)[0]:][:n * size]
        tags[tag] = struct.unpack(end + fmt * n, raw[:n * size])
    width, height = tags[256][0], tags[257][0]
    spp = tags.get(277, (1,))[0]
    if tags.get(259, (1,))[0] != 1 or set(tags.get(258, (8,))) != {8} or tags.get(284, (1,))[0] != 1:
        raise KernelError("ImageDecoder: only uncompressed 8-bit chunky TIFF is supported")
    strips = b"".join(data[o:o + n] for o, n in zip(tags[273], tags[279]))
    return np.frombuffer(strips, np.uint8, count=width * height * spp).reshape(height, width, spp)


def _pillow(data: bytes) -> np.ndarray:
    try:
        import io

        from PIL import Image
    except ImportError:
        raise KernelError("ImageDecoder: this image format needs Pillow, which is not installed") from None
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as e:  # Pillow raises many types on corrupt data
        raise KernelError(f"ImageDecoder: cannot decode image: {e}") from None


def decode(data: bytes) -> np.ndarray:
    """H x W x 3 uint8 RGB from encoded bytes."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        img = _png(data)
    elif data[:2] == b"BM":
        img = _bmp(data)
    elif data[:2] in (b"P5", b"P6"):
        img = _pnm(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        img = _tiff(data)
    else:
        img = _pillow(data)
    if img.shape[2] in (1, 2):  # gray (+alpha)
        img = np.repeat(img[..., :1], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


@op("ImageDecoder", since=20, attrs={"pixel_format": "RGB"})
def _image_decoder(ctx, encoded):
    img = decode(np.ascontiguousarray(encoded, dtype=np.uint8).tobytes())
    fmt = ctx["pixel_format"]
    if fmt == "BGR":
        return img[..., ::-1].copy()
    if fmt == "Grayscale":  # ITU-R 601 luma in 16-bit fixed point, as common decoders round it
        rgb = img.astype(np.uint32)
        luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)[..., None]
    if fmt != "RGB":
        raise KernelError(f"ImageDecoder: unknown pixel_format {fmt!r}")
    return img
