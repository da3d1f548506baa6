"""16-bit PCM audio in pure Python: band-limited resampling and mono WAV files.

espeak-ng speaks at 22050 Hz; telephone audio is 8 kHz. Dropping samples would fold everything
between 4 and 11 kHz back into the voice band as hiss, so :func:`resample` low-pass filters
(a Kaiser-windowed sinc) and decimates in one polyphase pass. About half a second per
40 seconds of speech on one core.
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from collections.abc import Sequence
from functools import lru_cache
from operator import mul
from pathlib import Path

#: Telephony audio Twilio <Play> accepts as-is: 8 kHz, mono, 16-bit PCM.
TELEPHONY_RATE = 8000


def resample(
    samples: Sequence[float],
    in_rate: int,
    out_rate: int,
    *,
    cutoff: float = 0.45,
    zero_crossings: int = 13,
    beta: float = 6.0,
) -> list[float]:
    """Resample by the rational factor out_rate / in_rate.

    The low-pass cutoff is ``cutoff`` times the lower of the two rates (0.45 x 8000 = 3.6 kHz,
    just under the 4 kHz Nyquist limit and above the 3.4 kHz telephone band). The filter spans
    ``zero_crossings`` sinc lobes each side; ``beta`` trades transition width for stop-band
    attenuation (6.0 gives about 60 dB).
    """
    if in_rate <= 0 or out_rate <= 0:
        raise ValueError("sample rates must be positive")
    if in_rate == out_rate:
        return [float(sample) for sample in samples]
    if not samples:
        return []
    common = math.gcd(in_rate, out_rate)
    up, down = out_rate // common, in_rate // common
    bank = _filter_bank(up, down, cutoff, zero_crossings, beta)
    taps = len(bank[0])
    half = taps // 2
    padded = [0.0] * taps
    padded.extend(float(sample) for sample in samples)
    padded.extend([0.0] * taps)
    out_length = -(-len(samples) * up // down)  # ceil: the last output lies within the input
    out: list[float] = []
    append = out.append
    for n in range(out_length):
        # Output n sits at input time n * down / up = base + phase / up.
        base, phase = divmod(n * down, up)
        start = base - half + 1 + taps
        append(sum(map(mul, bank[phase], padded[start : start + taps])))
    return out


@lru_cache(maxsize=8)
def _filter_bank(
    up: int, down: int, cutoff: float, zero_crossings: int, beta: float
) -> tuple[tuple[float, ...], ...]:
    """One set of taps per output phase, each summing to 1 (unity gain at DC)."""
    # Cutoff in cycles per input sample.
    fc = cutoff * min(up, down) / down
    half = math.ceil(zero_crossings / (2 * fc))
    norm = _bessel_i0(beta)
    bank = []
    for phase in range(up):
        frac = phase / up
        taps = []
        for k in range(2 * half):
            # Distance from the output instant to input sample (base - half + 1 + k).
            d = k - half + 1 - frac
            x = 2 * fc * d
            ideal = 2 * fc * (math.sin(math.pi * x) / (math.pi * x) if x else 1.0)
            r = d / half
            window = _bessel_i0(beta * math.sqrt(1 - r * r)) / norm if abs(r) < 1 else 0.0
            taps.append(ideal * window)
        total = sum(taps)
        bank.append(tuple(t / total for t in taps))
    return tuple(bank)


def _bessel_i0(x: float) -> float:
    """Modified Bessel function of the first kind, order 0 (power series)."""
    total = term = 1.0
    k = 1
    while term > 1e-12 * total:
        term *= (x / (2 * k)) ** 2
        total += term
        k += 1
    return total


def to_pcm16(samples: Sequence[float], *, peak: float = 0.7, max_gain: float = 8.0) -> array[int]:
    """Scale so the loudest sample sits at ``peak`` of full scale (never more than
    ``max_gain``), round and clip to 16-bit. A quiet synthesiser is hard to hear on a phone."""
    top = max((abs(sample) for sample in samples), default=0.0)
    gain = min(peak * 32767 / top, max_gain) if top else 1.0
    return array("h", (max(-32768, min(32767, round(sample * gain))) for sample in samples))


def read_wav(path: Path) -> tuple[array[int], int]:
    """Samples and rate of a 16-bit PCM WAV file (several channels are averaged to mono)."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples, got {reader.getsampwidth() * 8}")
        channels = reader.getnchannels()
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = array("h")
    samples.frombytes(frames)
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    if channels > 1:
        samples = array(
            "h",
            (sum(samples[i : i + channels]) // channels for i in range(0, len(samples), channels)),
        )
    return samples, rate


def write_wav(path: Path, samples: array[int], rate: int) -> None:
    """Write mono 16-bit PCM."""
    data = samples
    if sys.byteorder == "big":
        data = array("h", samples)
        data.byteswap()
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(data.tobytes())
