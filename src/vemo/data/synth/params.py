"""The generative model of the synthetic faces: identities, per-clip parameters and the time course.

Each actor has a fixed identity (face shape and aspect, jaw taper, skin tone, hair,
eye distance and size, brow thickness, nose length, mouth width, lip thickness, expressivity). Each
clip draws its own nuisance: background (gradient, blurred blobs, texture), head placement and scale,
small head motion (translation + rotation), gaze, blinks, lighting that changes over the clip (global
gain + a directional gradient), white balance, blur and sensor noise; the FLV codec adds its own
artefacts. The face is a static shaded head sprite plus moving parts (brows, lids, eyes, nostrils,
creases, lips, teeth) whose geometry is driven by action-unit-like amplitudes in [0, ~1]:

    AU1 inner brow raise   AU2 outer brow raise   AU4 brow lower/knit    AU5 upper lid raise
    AU6 cheek raise        AU7 lid tighten        AU43 lid droop         AU9 nose wrinkle
    AU10 upper lip raise   AU12 lip corner pull   AU15 lip corner depress
    AU20 lip stretch       AU24 lip press         AU26 jaw drop

An emotion is a row of `AU_TABLE`. A clip's apex amplitudes are that row x the level's gain (LO 0.35,
MD 0.6, HI 0.9, XX uniform in [0.4, 0.85], since CREMA-D's XX means "unspecified") x the actor's
expressivity x a +-25 % jitter per AU, plus a small clip-specific resting expression shared by all
emotions. Time course: the expression starts at a random 5-25 % of the clip, ramps (smoothstep) to its
apex over an emotion-specific onset (`ONSET`: anger and fear fast, ~0.1 of the clip; happy medium;
disgust and sadness slow, ~0.45), then holds with a slight decay and wobble. Independently of the
emotion, the jaw moves with speech: a syllable rhythm fixed by the sentence code, with a random phase.

What is confusable, on purpose: anger and disgust both lower the brows (disgust adds a nose wrinkle and
upper-lip raise, anger a lid tighten and lip press); fear and sadness both raise the inner brows (fear
adds an upper-lid raise, lip stretch and open mouth, sadness a lid droop and depressed lip corners);
LO clips are close to neutral; speech opens the mouth in every clip. Part of the signal is dynamic
(onset speed), which a single frame does not show. A good model should score well below 100 %.

Everything is deterministic: an actor's identity comes from SeedSequence([seed, actor]), a clip from
SeedSequence([seed, actor, sentence_index, emotion_index, level_index]) (indices into
`cfg.sentences`, `EMOTIONS`, `LEVELS`), so a seed gives byte-identical frames on any worker count.
The drawing is in render.py, the files in dataset.py.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from vemo.config import EMOTIONS, LEVELS, SynthConfig

# fmt: off
AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU43", "AU9", "AU10", "AU12", "AU15", "AU20", "AU24",
       "AU26")
# fmt: on
_I = {name: i for i, name in enumerate(AUS)}

# Apex amplitude of each action unit per emotion (before the level's gain and per-clip jitter).
# ANG/DIS share AU4 and FEA/SAD share AU1 on purpose; see the module docstring.
AU_TABLE: dict[str, dict[str, float]] = {
    "ANG": {"AU4": 0.85, "AU7": 0.6, "AU24": 0.6, "AU5": 0.1, "AU10": 0.2, "AU9": 0.1},
    "DIS": {"AU4": 0.7, "AU9": 0.65, "AU10": 0.55, "AU7": 0.3, "AU6": 0.2, "AU15": 0.25, "AU24": 0.1},
    "FEA": {"AU1": 0.85, "AU2": 0.45, "AU4": 0.35, "AU5": 0.65, "AU20": 0.6, "AU26": 0.4},
    "HAP": {"AU6": 0.65, "AU12": 0.95, "AU26": 0.15},
    "NEU": {},
    "SAD": {"AU1": 0.85, "AU4": 0.4, "AU43": 0.55, "AU15": 0.65, "AU24": 0.15, "AU20": 0.1},
}
# Onset duration (fraction of the clip) per emotion: the dynamic cue a single frame does not carry.
ONSET = {"ANG": 0.10, "FEA": 0.10, "HAP": 0.25, "DIS": 0.45, "SAD": 0.45, "NEU": 0.30}
LEVEL_GAIN = {"LO": 0.35, "MD": 0.6, "HI": 0.9}
XX_RANGE = (0.4, 0.85)

_SKIN = np.array(
    [[241, 208, 184], [226, 184, 152], [205, 160, 124], [178, 128, 94], [146, 100, 70], [112, 76, 54],
     [86, 58, 42]], np.float32)  # fmt: skip
_HAIR = np.array(
    [[22, 18, 16], [52, 36, 26], [92, 62, 38], [150, 110, 64], [196, 164, 106], [118, 112, 108],
     [176, 170, 164]], np.float32)  # fmt: skip
_IRIS = np.array([[60, 38, 24], [38, 26, 20], [70, 95, 120], [72, 96, 64], [96, 72, 40]], np.float32)
_RACE = ("Caucasian",) * 2 + ("Asian",) * 2 + ("African American",) * 3  # by skin tone, light to dark


def _vec(table: dict[str, float]) -> np.ndarray:
    v = np.zeros(len(AUS), np.float32)
    for name, amp in table.items():
        v[_I[name]] = amp
    return v


# ----------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Identity:
    """What makes an actor recognisable; fixed across all of that actor's clips. Lengths in head units
    (head half-height = 1, x to the right, y down, origin at the head centre)."""

    aspect: float  # head half-width
    jaw_taper: float  # how much narrower the lower face is than the cranium
    skin: np.ndarray
    hair: np.ndarray
    hair_style: int  # 0 buzz cut, 1 short, 2 long
    hairline: float
    brow_color: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    brow_gap: float
    brow_thick: float
    brow_arch: float
    nose_len: float
    nose_w: float
    mouth_gap: float  # nose base to mouth
    mouth_w: float
    upper_lip: float
    lower_lip: float
    expressivity: float
    resting: np.ndarray  # the actor's resting expression (AU offsets)
    talk_scale: float
    age: int
    sex: str
    race: str
    ethnicity: str

    @property
    def nose_y(self) -> float:
        return self.eye_y + self.nose_len

    @property
    def mouth_y(self) -> float:
        return self.nose_y + self.mouth_gap


@dataclass
class ClipParams:
    """Everything random about one clip, drawn up front (in a fixed order, whatever the emotion) so that
    changing `au` changes the expression and nothing else."""

    n_frames: int
    fps: float
    au: np.ndarray  # apex amplitudes of the emotion, per AU
    baseline: np.ndarray  # resting expression (actor + clip), present all along
    onset_start: float  # fraction of the clip
    onset_len: float
    decay: float
    wobble: tuple[float, float, float]  # amplitude, cycles per clip, phase
    talk_amp: float
    talk_phase: float
    talk_start: float  # seconds
    rhythm: tuple[float, tuple[float, ...]]  # syllables per second, syllable weights (from the sentence)
    center: tuple[float, float]  # head centre, target pixels
    scale: float  # target pixels per head unit
    zoom: float
    motion: tuple[float, ...]  # ax, fx, px, ay, fy, py (pixels, cycles per clip, phase)
    rot: tuple[float, float, float, float]  # degrees: rest, amplitude, cycles per clip, phase
    gaze: tuple[float, float, float, float]  # start x, y, end x, y (fractions of the iris travel)
    blinks: tuple[tuple[float, float], ...]  # (centre seconds, duration seconds)
    gain: tuple[float, float]  # global light gain at start and end
    shade: tuple[float, float, float, float]  # directional gradient (x, y) at start and end
    face_light: tuple[float, float]  # angle, strength of the light modelled on the head
    white: tuple[float, float, float]
    noise: float  # sensor noise std, 0-255 units
    blur: float  # Gaussian blur sigma, target pixels
    bg_seed: int
    noise_seed: int


def clip_name(actor: int, sentence: str, emotion: str, level: str) -> str:
    """CREMA-D's file name for a clip, e.g. `1001_IEO_ANG_HI.flv`."""
    return f"{actor:04d}_{sentence}_{emotion}_{level}.flv"


def _n_frames(cfg: SynthConfig) -> int:
    return max(1, round(cfg.fps * cfg.seconds))


def actor_identity(cfg: SynthConfig, actor: int) -> Identity:
    """An actor's face, drawn from SeedSequence([seed, actor]) so it is the same in every clip."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, actor]))
    male = bool(rng.random() < 0.5)
    tone = rng.uniform(0, len(_SKIN) - 1)
    k = int(tone)
    skin = _SKIN[k] + (tone - k) * (_SKIN[min(k + 1, len(_SKIN) - 1)] - _SKIN[k])
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.1)
    style = int(rng.choice([0, 1, 1]) if male else rng.choice([1, 2, 2]))
    brow = np.minimum(hair * 0.8, skin * 0.45)
    lip = skin * np.array([0.86, 0.6, 0.62], np.float32) + np.array([18, 4, 8], np.float32)
    resting = np.zeros(len(AUS), np.float32)
    resting[rng.choice(len(AUS), 2, replace=False)] = rng.uniform(0.0, 0.15, 2)
    return Identity(
        aspect=rng.uniform(0.72, 0.84) + 0.02 * male,
        jaw_taper=rng.uniform(0.15, 0.3) if male else rng.uniform(0.25, 0.42),
        skin=skin, hair=hair, hair_style=style, hairline=rng.uniform(-0.72, -0.52),
        brow_color=brow, lip=lip, iris=_IRIS[rng.integers(len(_IRIS))],
        eye_dx=rng.uniform(0.29, 0.37), eye_y=rng.uniform(-0.16, -0.06), eye_w=rng.uniform(0.12, 0.155),
        eye_h=rng.uniform(0.05, 0.068), eye_tilt=rng.uniform(-0.1, 0.25), brow_gap=rng.uniform(0.15, 0.2),
        brow_thick=rng.uniform(0.04, 0.065) if male else rng.uniform(0.028, 0.045),
        brow_arch=rng.uniform(0.01, 0.045), nose_len=rng.uniform(0.32, 0.43), nose_w=rng.uniform(0.08, 0.11),
        mouth_gap=rng.uniform(0.15, 0.2), mouth_w=rng.uniform(0.19, 0.26),
        upper_lip=rng.uniform(0.03, 0.045), lower_lip=rng.uniform(0.04, 0.06) + 0.01 * (not male),
        expressivity=rng.uniform(0.8, 1.2), resting=resting, talk_scale=rng.uniform(0.8, 1.2),
        age=int(rng.integers(20, 75)), sex="Male" if male else "Female",
        race=_RACE[round(tone)] if rng.random() > 0.1 else "Unknown",
        ethnicity="Hispanic" if rng.random() < 0.15 else "Not Hispanic",
    )  # fmt: skip


def _rhythm(sentence: str) -> tuple[float, tuple[float, ...]]:
    """Syllable rate and stress pattern: a deterministic function of the sentence code alone."""
    rng = np.random.default_rng(zlib.crc32(sentence.encode()))
    weights = rng.uniform(0.35, 1.0, 24)
    weights[rng.random(24) < 0.15] = 0.0  # pauses
    return float(rng.uniform(3.0, 4.8)), tuple(float(w) for w in weights)


def _level_gain(level: str, rng: np.random.Generator) -> float:
    xx = float(rng.uniform(*XX_RANGE))  # always drawn, so the draw order does not depend on the level
    return xx if level == "XX" else LEVEL_GAIN[level]


def _exposure(I: Identity) -> float:
    """Auto-exposure: cameras expose for the face, so dark skin is not rendered as a featureless blob."""
    luma = float(I.skin @ np.array([0.299, 0.587, 0.114], np.float32))
    return float(np.clip(150.0 / luma, 0.85, 2.2))


def clip_params(cfg: SynthConfig, actor: int, sentence: str, emotion: str, level: str) -> ClipParams:
    """All random choices of one clip, from SeedSequence([seed, actor, sentence, emotion, level])."""
    if emotion not in EMOTIONS or level not in LEVELS or sentence not in cfg.sentences:
        raise ValueError(f"unknown clip {clip_name(actor, sentence, emotion, level)!r} for this config")
    key = [cfg.seed, actor, cfg.sentences.index(sentence), EMOTIONS.index(emotion), LEVELS.index(level)]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    ident = actor_identity(cfg, actor)
    n = _n_frames(cfg)
    seconds = n / cfg.fps
    u = rng.uniform
    gain = _level_gain(level, rng) * ident.expressivity
    au = _vec(AU_TABLE[emotion]) * gain * u(0.75, 1.25, len(AUS)).astype(np.float32)
    baseline = ident.resting + (u(0, 0.12, len(AUS)) * (rng.random(len(AUS)) < 0.35)).astype(np.float32)
    n_blinks = int(rng.poisson(0.5 * seconds))
    blinks = tuple((float(u(0.05, 0.95) * seconds), float(u(0.15, 0.25))) for _ in range(n_blinks))
    return ClipParams(
        n_frames=n, fps=cfg.fps, au=au, baseline=baseline,
        onset_start=float(u(0.05, 0.25)), onset_len=ONSET[emotion] * float(u(0.8, 1.2)),
        decay=float(u(0.0, 0.25)), wobble=(float(u(0, 0.06)), float(u(0.5, 1.5)), float(u(0, 2 * np.pi))),
        talk_amp=float(u(0.35, 0.6)) * ident.talk_scale, talk_phase=float(u(0, 1)),
        talk_start=float(u(0.0, 0.15) * seconds), rhythm=_rhythm(sentence),
        center=(cfg.width * (0.5 + float(u(-0.06, 0.06))), cfg.height * (0.5 + float(u(-0.045, 0.045)))),
        scale=cfg.height * float(u(0.46, 0.6)) / 2, zoom=float(u(-0.03, 0.03)),
        motion=(float(u(0, 0.02)) * cfg.width, float(u(0.3, 1.2)), float(u(0, 2 * np.pi)),
                float(u(0, 0.015)) * cfg.height, float(u(0.3, 1.2)), float(u(0, 2 * np.pi))),
        rot=(float(u(-5, 5)), float(u(0, 4)), float(u(0.3, 1.0)), float(u(0, 2 * np.pi))),
        gaze=tuple(float(g) for g in u(-0.6, 0.6, 4)), blinks=blinks,
        gain=(float(u(0.75, 1.15)) * _exposure(ident), float(u(0.75, 1.15)) * _exposure(ident)),
        shade=tuple(float(s) for s in u(-0.25, 0.25, 4)),
        face_light=(float(u(0, 2 * np.pi)), float(u(0.0, 0.3))),
        white=tuple(float(w) for w in u(0.9, 1.1, 3)),
        noise=float(u(1.5, 7.0)), blur=float(u(0.0, 1.0)),
        bg_seed=int(rng.integers(2**31)), noise_seed=int(rng.integers(2**31)),
    )  # fmt: skip


# -------------------------------------------------------------------------------------------- dynamics


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def envelope(p: ClipParams, t: float) -> float:
    """Expression strength at clip fraction t: 0 before onset, smoothstep ramp, then hold with decay."""
    ramp = _smoothstep((t - p.onset_start) / p.onset_len)
    after = max(0.0, t - p.onset_start - p.onset_len)
    amp, freq, phase = p.wobble
    return ramp * (1 - p.decay * after) * (1 + amp * np.sin(2 * np.pi * freq * t + phase))


def talk(p: ClipParams, seconds: float) -> float:
    """Jaw opening from speech: one sin^2 bump per syllable, weighted by the sentence's pattern."""
    if seconds < p.talk_start:
        return 0.0
    rate, weights = p.rhythm
    pos = rate * (seconds - p.talk_start) + p.talk_phase
    k = int(pos)
    return p.talk_amp * weights[k % len(weights)] * float(np.sin(np.pi * (pos - k)) ** 2)


def blink(p: ClipParams, seconds: float) -> float:
    """Lid closure in [0, 1]: emotion-independent, so closed eyes are never a label cue."""
    out = 0.0
    for centre, dur in p.blinks:
        out = max(out, 1 - abs(seconds - centre) / (dur / 2))
    return _smoothstep(out)


def au_at(p: ClipParams, i: int) -> np.ndarray:
    """AU amplitudes at frame i (expression only; speech and blinks are added by the renderer)."""
    t = i / max(1, p.n_frames - 1)
    return p.baseline + p.au * np.float32(envelope(p, t))


def apex_frame(p: ClipParams) -> int:
    """First frame at full expression (end of the onset ramp)."""
    t = min(1.0, p.onset_start + p.onset_len)
    return min(p.n_frames - 1, round(t * (p.n_frames - 1)))
