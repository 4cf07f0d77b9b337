"""Generate Grainbox's Pd patches (main.pd, the grainbox-* abstractions and their -help.pd files).

The .pd files are committed and meant to be opened and changed in the Pd GUI; this script is how they
were laid out, and the one place where the parameter table (names, ranges, defaults) lives, so the
patch, its GUI and docs/osc.md agree. Run it after changing PARAMS or an abstraction:

    .venv/bin/python pd/make_patches.py

Naming: every global send/receive and array starts with `gb_` and uses underscores, because [expr] reads
[value]s and arrays by name and would parse a dash as a minus sign.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pdwriter import Patch

HERE = Path(__file__).resolve().parent
# What the box can play, shared with the runtime's check and box.toml: the patch applies the same limits.
LIMITS = json.loads((HERE.parent / "runtime" / "contract.json").read_text())["limits"]
MAX_SLOTS = LIMITS["slots"]["max"]  # /model may ask for up to this many grain slots
GUARD = 3  # each slot table holds [g[G-1], g[0] .. g[G-1], g[0], g[1]] so [tabread4~] wraps smoothly
RING = 4  # tables per slot: a new grain goes into a table no voice is reading (double buffering, x4)
VOICES = 32  # [clone]d grain voices; the `voices` parameter uses the first n of them
STEAL_FADE_MS = 3  # a stolen voice fades out over this ...
STEAL_WAIT_MS = 4.5  # ... and starts its new grain this much later (one 64-sample block after the fade)


@dataclass(frozen=True)
class Param:
    name: str
    lo: float
    hi: float
    default: float
    log: bool = False
    integer: bool = False
    unit: str = ""
    doc: str = ""
    gui: str = "slider"  # slider | toggle | radio:N | number


PARAMS: list[Param] = [
    # scheduler
    Param("density", 0.5, 500, 20, log=True, unit="grains/s", doc="grain onsets per second"),
    Param("async", 0, 1, 0, doc="asynchrony: onset jitter, 0 = metronomic, 1 = random intervals"),
    Param("intermittency", 0, 1, 0, doc="probability that a scheduled grain is skipped"),
    Param("clocked", 0, 1, 0, integer=True, gui="toggle",
          doc="1: grains come only from /trigger and MIDI clock; 0: the density clock"),
    Param("clockdiv", 1, 96, 6, integer=True, unit="ticks", gui="number",
          doc="MIDI clock ticks per grain (24 = quarter notes, 6 = sixteenths)"),
    Param("voices", 1, VOICES, VOICES, integer=True, gui="number",
          doc="voices in use; when all are busy a new grain steals the oldest"),
    # grain
    Param("duration", 5, 1000, 80, log=True, unit="ms",
          doc="grain length; longer than the slot's material loops it"),
    Param("shape", 0, 1, 0, doc="envelope: 0 Hann, 0.5 flat top, 1 percussive"),
    Param("reverse", 0, 1, 0, doc="probability that a grain plays backwards"),
    Param("spread", 0, 1, 1, doc="slot spread: 0 only slot 0, 1 any of the N slots at random"),
    Param("pan", 0, 1, 0.5, doc="stereo pan spread: 0 centre, 1 anywhere from left to right"),
    Param("normalize", 0, 1, 1, integer=True, gui="toggle",
          doc="1: scale grains by 1/sqrt(overlap) so density does not change loudness"),
    # pitch
    Param("transpose", -24, 24, 0, unit="semitones", doc="coarse transposition"),
    Param("fine", -100, 100, 0, unit="cents", doc="fine tuning, added after quantisation"),
    Param("pitchjitter", 0, 24, 0, unit="semitones", doc="random transposition per grain, +-"),
    Param("scale", 0, 4, 0, integer=True, gui="radio:5",
          doc="quantise transposition: 0 off, 1 chromatic, 2 major, 3 minor, 4 pentatonic"),
    Param("root", 0, 127, 60, integer=True, gui="number",
          doc="MIDI note that plays the material untransposed (keys transpose relative to it)"),
    Param("keygate", 0, 1, 0, integer=True, gui="toggle", doc="1: grains play only while a key is held"),
    # output
    Param("tone", 0, 1, 1, doc="resonant low-pass cutoff, 80 Hz to 20 kHz (1 = open)"),
    Param("resonance", 0, 1, 0, doc="filter resonance"),
    Param("reverb", 0, 1, 0.15, doc="send to the reverb (Pd's extra/rev3~)"),
    Param("gain", 0, 2, 0.7, unit="linear", doc="output gain, before the soft limiter"),
    Param("freeze", 0, 1, 0, integer=True, gui="toggle",
          doc="1: incoming grains are held back, the current material keeps playing"),
]
LFO_SHAPES = ["sine", "triangle", "square", "random"]
# what an LFO can modulate: every continuous parameter (index 0 = none)
LFO_TARGETS = ["none"] + [p.name for p in PARAMS if not p.integer]
for n in (1, 2):
    PARAMS += [
        Param(f"lfo{n}rate", 0.01, 20, 0.5, log=True, unit="Hz", doc=f"LFO {n} rate"),
        Param(f"lfo{n}shape", 0, 3, 0, integer=True, gui="radio:4",
              doc=f"LFO {n} shape: 0 sine, 1 triangle, 2 square, 3 random"),
        Param(f"lfo{n}depth", 0, 1, 0, doc=f"LFO {n} depth: 1 sweeps the target's whole range"),
        Param(f"lfo{n}target", 0, len(LFO_TARGETS) - 1, 0, integer=True, gui="number",
              doc=f"LFO {n} target: index into the list of modulatable parameters (0 = none)"),
    ]

SCALES = {  # pitch classes of each scale, relative to the root
    "chromatic": list(range(12)),
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "pentatonic": [0, 2, 4, 7, 9],
}


def nearest_in_scale(pc: int, degrees: list[int]) -> int:
    """The scale degree nearest to pitch class pc (ties go down; 12 = the root an octave up)."""
    return min([*degrees, 12], key=lambda d: (abs(d - pc), d))


def scale_table() -> list[int]:
    return [nearest_in_scale(pc, degs) for degs in SCALES.values() for pc in range(12)]


# ---------------------------------------------------------------------------------------------------
# grainbox-voice: one grain at a time; [clone]d VOICES times


def voice() -> Patch:
    p = Patch(820, 720)
    p.comment(20, 10, "grainbox-voice: plays one grain at a time. [clone] makes 32 of it; the "
              "scheduler sends each grain to one instance as a list:", 70)
    p.comment(20, 50, "table start end duration 1/attack 1/release gain_left gain_right amp steal", 80)
    inlet = p.obj(20, 90, "inlet")
    p.comment(70, 90, "<- one grain (table = slot*4 + ring entry, positions in slot samples)", 60)
    trig = p.obj(20, 130, "t l l")
    split = p.obj(160, 160, "list split 9")
    steal = p.obj(160, 190, "sel 1")
    steal_t = p.obj(160, 220, "t b b")
    fade = p.msg(160, 250, f"0 {STEAL_FADE_MS}")
    wait = p.msg(230, 250, f"{STEAL_WAIT_MS}")
    now = p.msg(300, 220, "0")
    p.comment(350, 190, "a busy voice (steal = 1) fades out in 3 ms and starts the new grain when "
              "the fade is over, so stealing never clicks", 36)
    delay = p.obj(230, 290, "delay")
    store = p.obj(20, 320, "list store")
    p.connect(inlet, 0, trig)
    p.connect(trig, 1, split)
    p.connect(trig, 0, store, 1)
    p.connect(split, 1, steal)
    p.connect(steal, 0, steal_t)
    p.connect(steal, 1, now)
    p.connect(steal_t, 1, fade)
    p.connect(steal_t, 0, wait)
    p.connect(wait, 0, delay)
    p.connect(now, 0, delay)
    p.connect(delay, 0, store)
    unpack = p.obj(20, 360, "unpack f f f f f f f f f")
    p.connect(store, 0, unpack)
    # table name
    tabname = p.obj(20, 400, "makefilename gb_tab_%d")
    settab = p.msg(20, 430, "set $1")
    p.connect(unpack, 0, tabname)
    p.connect(tabname, 0, settab)
    # phase ramp (slot samples)
    pk = p.obj(100, 430, "pack f f f")
    ramp = p.msg(100, 460, "$1, $2 $3")
    p.connect(unpack, 1, pk, 0)
    p.connect(unpack, 2, pk, 1)
    p.connect(pk, 0, ramp)
    # duration: envelope ramp, DSP on, DSP off after the grain
    dur_t = p.obj(250, 400, "t f f b")
    p.connect(unpack, 3, dur_t)
    p.connect(dur_t, 0, pk, 2)
    env_msg = p.msg(250, 460, "0, 1 $1")
    p.connect(dur_t, 0, env_msg)
    off_after = p.obj(330, 430, "+ 10")
    off_delay = p.obj(330, 460, "delay")
    off = p.msg(330, 490, "0")
    on = p.msg(400, 460, "1")
    p.connect(dur_t, 1, off_after)
    p.connect(off_after, 0, off_delay)
    p.connect(off_delay, 0, off)
    p.connect(dur_t, 2, on)
    # envelope shape and pan/amp gains
    ia = p.obj(460, 400, "t f")
    ir = p.obj(520, 400, "t f f")
    neg_ir = p.obj(520, 430, "* -1")
    p.connect(unpack, 4, ia)
    p.connect(unpack, 5, ir)
    p.connect(ir, 0, neg_ir)

    # signal chain
    p.comment(20, 520, "read the slot, looping it when the grain is longer than the material", 40)
    phase = p.obj(100, 570, "vline~")
    div = p.obj(100, 600, "/~ 1024")
    wrap = p.obj(100, 630, "wrap~")
    mul = p.obj(100, 660, "*~ 1024")
    skip = p.obj(170, 660, "+~ 1")
    read = p.obj(100, 690, "tabread4~ gb_tab_0")
    gsize = p.obj(200, 570, "r gb_grainsize")
    p.chain(ramp, phase, div, wrap, mul, skip, read)
    p.comment(230, 660, "(skip the guard point)", 12)
    p.connect(settab, 0, read)
    p.connect(gsize, 0, div, 1)
    p.connect(gsize, 0, mul, 1)
    p.comment(420, 520, "envelope: raised cosine over min(rise, fall), where rise = p/attack and "
              "fall = (1-p)/release clip to 0..1; attack = release = 0.5 is Hann", 50)
    envp = p.obj(250, 570, "vline~")
    rise = p.obj(250, 610, "*~ 2")
    rise_c = p.obj(250, 640, "clip~ 0 1")
    fall = p.obj(330, 610, "*~ -2")
    fall_a = p.obj(330, 640, "+~ 2")
    fall_c = p.obj(330, 670, "clip~ 0 1")
    mn = p.obj(250, 700, "min~")
    half = p.obj(250, 730, "*~ 0.5")
    cos = p.obj(250, 760, "cos~")
    scale = p.obj(250, 790, "*~ -0.5")
    offset = p.obj(250, 820, "+~ 0.5")
    p.connect(env_msg, 0, envp)
    p.connect(envp, 0, rise)
    p.connect(envp, 0, fall)
    p.connect(ia, 0, rise, 1)
    p.connect(neg_ir, 0, fall, 1)
    p.connect(ir, 1, fall_a, 1)
    p.chain(rise, rise_c)
    p.chain(fall, fall_a, fall_c)
    p.connect(rise_c, 0, mn)
    p.connect(fall_c, 0, mn, 1)
    p.chain(mn, half, cos, scale, offset)
    declick = p.obj(420, 760, "vline~")
    p.comment(500, 760, "steal fade", 12)
    p.connect(fade, 0, declick)
    p.connect(on, 0, declick)
    env = p.obj(250, 860, "*~")
    p.connect(offset, 0, env)
    p.connect(declick, 0, env, 1)
    grain = p.obj(100, 890, "*~")
    p.connect(read, 0, grain)
    p.connect(env, 0, grain, 1)
    amp = p.obj(100, 920, "*~ 0")
    p.connect(grain, 0, amp)
    p.connect(unpack, 8, amp, 1)
    left = p.obj(100, 950, "*~ 0")
    right = p.obj(200, 950, "*~ 0")
    p.connect(amp, 0, left)
    p.connect(amp, 0, right)
    p.connect(unpack, 6, left, 1)
    p.connect(unpack, 7, right, 1)
    out_l = p.obj(100, 990, "outlet~")
    out_r = p.obj(200, 990, "outlet~")
    p.comment(260, 990, "<- left, right ([clone] sums the voices)", 40)
    p.connect(left, 0, out_l)
    p.connect(right, 0, out_r)
    sw = p.obj(600, 870, "switch~")
    lb = p.obj(600, 810, "loadbang")
    p.comment(600, 900, "DSP runs only while a grain plays: idle voices cost nothing", 30)
    p.connect(lb, 0, off)
    p.connect(off, 0, sw)
    p.connect(on, 0, sw)
    p.height = 1040
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-param NAME lo hi default log integer: one parameter's store


def param() -> Patch:
    p = Patch(760, 520)
    p.comment(20, 10, "grainbox-param name lo hi default log integer: stores one synthesis parameter. "
              "Set it by sending a number to gb_<name>_in (OSC /param and the GUI do); read the "
              "value in force with [v gb_<name>] (when you need it) or [r gb_<name>] (when it "
              "changes). The LFOs move it by sending an offset, in units of the whole range, to "
              "gb_<name>_mod1 and gb_<name>_mod2.", 90)
    rin = p.obj(20, 100, "r gb_$1_in")
    lb = p.obj(160, 100, "loadbang")
    dflt = p.obj(160, 130, "f $4")
    p.connect(lb, 0, dflt)
    low = p.obj(20, 160, "moses -1e+30")
    high = p.obj(20, 190, "moses 1e+30")
    p.comment(130, 175, "NaN and inf stop here", 30)
    clip = p.obj(20, 220, "clip $2 $3")
    rnd = p.obj(20, 250, "expr if($6, rint($f1), $f1)")
    p.connect(rin, 0, low)
    p.connect(dflt, 0, low)
    p.connect(low, 1, high)
    p.chain(high, clip, rnd)
    base_t = p.obj(20, 280, "t b f f f")
    p.connect(rnd, 0, base_t)
    base = p.obj(20, 340, "v gb_$1_base")
    p.connect(base_t, 1, base)
    setgui = p.msg(180, 320, "set $1")
    sgui = p.obj(180, 350, "s gb_$1_gui")
    show = p.obj(300, 320, "s gb_$1_show")
    p.connect(base_t, 3, setgui)
    p.chain(setgui, sgui)
    p.connect(base_t, 2, show)
    p.comment(420, 320, "<- the GUI shows the base value", 30)
    m1 = p.obj(420, 100, "r gb_$1_mod1")
    m2 = p.obj(560, 100, "r gb_$1_mod2")
    v1 = p.obj(420, 130, "v gb_$1_m1")
    v2 = p.obj(560, 130, "v gb_$1_m2")
    b1 = p.obj(420, 160, "t b")
    b2 = p.obj(560, 160, "t b")
    p.connect(m1, 0, v1)
    p.connect(m2, 0, v2)
    p.connect(m1, 0, b1)
    p.connect(m2, 0, b2)
    eff = p.obj(20, 400, "expr if(gb_$1_m1 + gb_$1_m2 == 0, gb_$1_base, if($5, $2*exp(min(max("
                         "log(gb_$1_base/$2)/log($3/$2) + gb_$1_m1 + gb_$1_m2, 0), 1)*log($3/$2)), "
                         "$2 + min(max((gb_$1_base - $2)/($3 - $2) + gb_$1_m1 + gb_$1_m2, 0), 1)*($3 - $2)))")
    p.comment(20, 440, "value in force: the base, or the base moved by the LFOs in units of the range "
              "(of its logarithm for log parameters), clipped to the range", 80)
    p.connect(base_t, 0, eff)
    p.connect(b1, 0, eff)
    p.connect(b2, 0, eff)
    rnd2 = p.obj(20, 490, "expr if($6, rint($f1), $f1)")
    p.connect(eff, 0, rnd2)
    out = p.obj(20, 520, "t f f")
    v = p.obj(20, 550, "v gb_$1")
    s = p.obj(120, 550, "s gb_$1")
    p.connect(rnd2, 0, out)
    p.connect(out, 1, v)
    p.connect(out, 0, s)
    p.height = 600
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-lfo N: LFO N (1 or 2), shape/rate/depth/target from parameters lfoN*


def lfo() -> Patch:
    p = Patch(760, 600)
    p.comment(20, 10, "grainbox-lfo n: low-frequency oscillator n, computed every 10 ms from the "
              "parameters lfo<n>rate (Hz), lfo<n>shape (0 sine, 1 triangle, 2 square, 3 random), "
              "lfo<n>depth (0..1) and lfo<n>target (line of gb_lfo_targets, 0 = none). It sends "
              "depth * value / 2 to gb_<target>_mod<n>, which [grainbox-param] adds to the base.", 90)
    lb = p.obj(20, 100, "loadbang")
    metro = p.obj(20, 130, "metro 10")
    p.connect(lb, 0, metro)
    tick = p.obj(20, 160, "t b b")
    p.connect(metro, 0, tick)
    rate = p.obj(20, 190, "v gb_lfo$1rate")
    step = p.obj(20, 220, "* 0.01")
    acc = p.obj(20, 250, "+")
    wrap = p.obj(20, 280, "wrap")
    ph = p.obj(20, 310, "t f f f")
    p.connect(tick, 0, rate)
    p.chain(rate, step, acc, wrap, ph)
    p.connect(ph, 2, acc, 1)
    p.comment(100, 250, "phase 0..1", 12)
    prev = p.obj(200, 310, "f")
    wrapped = p.obj(200, 340, "expr $f1 < $f2")
    p.connect(prev, 0, wrapped, 1)
    p.connect(ph, 1, wrapped)
    p.connect(ph, 1, prev, 1)
    p.connect(tick, 1, prev)
    sel = p.obj(200, 370, "sel 1")
    rnd = p.obj(200, 400, "expr random(0, 2000001)/1e6 - 1")
    held = p.obj(200, 430, "v gb_lfo$1held")
    p.chain(wrapped, sel, rnd, held)
    p.comment(330, 370, "random: a new value each cycle (sample and hold)", 24)
    value = p.obj(20, 470, "expr gb_lfo$1depth*0.5*if(gb_lfo$1shape == 0, sin(6.2831853*$f1), "
                           "if(gb_lfo$1shape == 1, 1 - 4*abs($f1 - 0.5), if(gb_lfo$1shape == 2, "
                           "if($f1 < 0.5, 1, -1), gb_lfo$1held)))")
    p.connect(ph, 0, value)
    gate = p.obj(20, 510, "spigot")
    out = p.obj(20, 540, "s")
    p.chain(value, gate, out)
    target = p.obj(460, 130, "r gb_lfo$1target")
    changed = p.obj(460, 160, "change")
    tt = p.obj(460, 190, "t f f b")
    zero = p.msg(560, 220, "0")
    p.comment(600, 220, "release the old target", 14)
    p.connect(target, 0, changed)
    p.connect(changed, 0, tt)
    p.connect(tt, 2, zero)
    p.connect(zero, 0, out)
    get = p.obj(460, 260, "text get gb_lfo_targets")
    name = p.obj(460, 290, "makefilename gb_%s_mod$1")
    p.connect(tt, 1, get)
    p.chain(get, name)
    p.connect(name, 0, out, 1)
    on = p.obj(460, 330, "> 0")
    p.connect(tt, 0, on)
    p.connect(on, 0, gate, 1)
    init = p.obj(160, 130, "symbol gb_none_mod$1")
    p.connect(lb, 0, init)
    p.connect(init, 0, out, 1)
    p.obj(160, 540, "r gb_none_mod$1")
    p.comment(300, 540, "<- target 0 (none) lands here", 30)
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-scheduler: when grains start and what each one is


def scheduler() -> Patch:
    p = Patch(1100, 900)
    p.comment(20, 10, "grainbox-scheduler: decides when a grain starts (density clock with asynchrony "
              "and intermittency, /trigger, MIDI clock) and what it is (slot, pitch, direction, "
              "envelope, pan, voice). Its outlet feeds [clone grainbox-voice]. All parameters are read "
              "from [value]s at the moment of the grain, so LFOs and knobs act grain by grain.", 100)
    # clock
    p.comment(20, 90, "density clock: a [delay] that re-arms itself; [vline~] in the voice makes each "
              "onset sample-accurate", 50)
    lb = p.obj(20, 140, "loadbang")
    first = p.msg(20, 170, "100")
    clock = p.obj(20, 200, "delay")
    p.chain(lb, first, clock)
    ct = p.obj(20, 230, "t b b b")
    p.connect(clock, 0, ct)
    nxt = p.obj(160, 260, "expr max(0.1, 1000/gb_density*(1 + gb_async*(random(0, 2000001)/1e6 - 1)))")
    p.connect(ct, 2, nxt)
    p.connect(nxt, 0, clock)
    since = p.obj(160, 320, "timer")
    p.connect(ct, 1, since)
    dens = p.obj(600, 260, "r gb_density")
    dens_t = p.obj(600, 290, "t b")
    p.chain(dens, dens_t)
    p.connect(dens_t, 0, since, 1)
    resched = p.obj(600, 350, "expr max(0, 1000/gb_density - $f1)")
    p.comment(600, 380, "a new density takes effect at once", 30)
    p.connect(since, 0, resched)
    p.connect(resched, 0, clock)
    free = p.obj(20, 380, "expr gb_clocked == 0")
    sel_free = p.obj(20, 410, "sel 1")
    p.connect(ct, 0, free)
    p.chain(free, sel_free)
    # triggers
    trig = p.obj(240, 410, "r gb_trigger")
    p.comment(240, 440, "/trigger fires one grain now", 20)
    midi = p.obj(420, 410, "midirealtimein")
    midsel = p.obj(420, 440, "sel 248 250 252")
    cnt = p.obj(420, 470, "f")
    inc = p.obj(460, 500, "+ 1")
    reset = p.msg(520, 470, "0")
    p.connect(midi, 0, midsel)
    p.connect(midsel, 0, cnt)
    p.connect(midsel, 1, reset)
    p.connect(midsel, 2, reset)
    p.connect(reset, 0, cnt, 1)
    cnt_t = p.obj(420, 530, "t f f")
    p.connect(cnt, 0, cnt_t)
    p.connect(cnt_t, 1, inc)
    p.connect(inc, 0, cnt, 1)
    tick_ok = p.obj(420, 560, "expr gb_clocked && $f1 % max(1, gb_clockdiv) == 0")
    p.comment(560, 560, "MIDI clock: 24 ticks per quarter note; a grain every clockdiv ticks while "
              "clocked", 40)
    p.connect(cnt_t, 0, tick_ok)
    tick_sel = p.obj(420, 590, "sel 1")
    p.connect(tick_ok, 0, tick_sel)
    # gate
    gate = p.obj(20, 630, "expr random(0, 1000000)/1e6 >= gb_intermittency && (gb_keygate == 0 || "
                          "gb_keysheld > 0)")
    p.comment(20, 660, "intermittency skips grains at random; keygate needs a held key", 60)
    p.connect(sel_free, 0, gate)
    p.connect(trig, 0, gate)
    p.connect(tick_sel, 0, gate)
    go = p.obj(20, 690, "sel 1")
    p.connect(gate, 0, go)
    g = p.subpatch(20, 730, "one-grain", one_grain())
    p.connect(go, 0, g)
    out = p.obj(20, 770, "outlet")
    p.comment(80, 770, "-> voice table start end duration 1/attack 1/release gain_l gain_r amp steal", 50)
    p.connect(g, 0, out)
    return p


def one_grain() -> Patch:
    p = Patch(1100, 760)
    inlet = p.obj(20, 20, "inlet")
    p.comment(80, 20, "bang: make one grain. [trigger] runs right to left: time, voice, pitch, "
              "duration, slot, envelope/pan/amp, bookkeeping, and last the voice number, which "
              "outputs the list", 90)
    t = p.obj(20, 80, "t b b b b b b b b")
    p.connect(inlet, 0, t)
    pk = p.obj(20, 640, "pack f f f f f f f f f f f")
    outlet = p.obj(20, 680, "outlet")
    p.connect(pk, 0, outlet)
    # 7: time
    lb = p.obj(900, 110, "loadbang")
    timer = p.obj(900, 140, "timer")
    now = p.obj(900, 170, "v gb_now")
    p.connect(lb, 0, timer)
    p.connect(t, 7, timer, 1)
    p.connect(timer, 0, now)
    # 6: voice allocation
    nv = p.obj(700, 110, "v gb_voices")
    vt = p.obj(700, 140, "t b f")
    p.connect(t, 6, nv)
    p.connect(nv, 0, vt)
    amin = p.obj(700, 170, "array min gb_vend 0 32")
    p.connect(vt, 1, amin, 1)
    p.connect(vt, 0, amin)
    vidx = p.obj(880, 210, "f")
    p.connect(amin, 1, vidx, 1)
    isfree = p.obj(700, 210, "expr $f1 <= gb_now")
    p.connect(amin, 0, isfree)
    fsel = p.obj(700, 240, "sel 1 0")
    p.connect(isfree, 0, fsel)
    p.comment(700, 270, "a free voice, else steal the oldest", 20)
    free_t = p.obj(700, 300, "t b b")
    zero = p.msg(760, 330, "0")
    p.connect(fsel, 0, free_t)
    p.connect(free_t, 1, zero)
    p.connect(free_t, 0, vidx)
    steal_t = p.obj(850, 300, "t b b")
    one = p.msg(930, 330, "1")
    nv2 = p.obj(850, 330, "v gb_voices")
    p.connect(fsel, 1, steal_t)
    p.connect(steal_t, 1, one)
    p.connect(steal_t, 0, nv2)
    amin2 = p.obj(850, 360, "array min gb_vstart 0 32")
    nvt = p.obj(850, 390, "t b f")
    p.connect(nv2, 0, nvt)
    p.connect(nvt, 1, amin2, 1)
    p.connect(nvt, 0, amin2)
    steal = p.obj(760, 420, "f")
    voice = p.obj(880, 420, "f")
    p.connect(zero, 0, steal, 1)
    p.connect(one, 0, steal, 1)
    p.connect(vidx, 0, voice, 1)
    p.connect(amin2, 1, voice, 1)
    # 5: pitch -> ratio -> length and direction
    semis = p.obj(60, 110, "expr gb_transpose + if(gb_note >= 0, gb_note - gb_root, 0) + "
                           "gb_pitchjitter*(random(0, 2000001)/1e6 - 1)")
    p.connect(t, 5, semis)
    ratio = p.obj(60, 140, "expr pow(2, (if(gb_scale < 1, $f1, 12*floor(rint($f1)/12) + gb_scales[(int("
                           "gb_scale) - 1)*12 + rint($f1) - 12*floor(rint($f1)/12)]) + gb_fine/100)/12)")
    p.comment(60, 170, "semitones (transpose + key - root + jitter), quantised to the scale, + fine -> "
              "rate ratio", 60)
    length = p.obj(60, 210, "expr gb_duration*gb_modelsr/1000*$f1")
    p.comment(330, 210, "slot samples crossed: the model's rate against Pd's own is handled by "
              "[vline~], which counts in ms", 40)
    rev = p.obj(60, 250, "expr random(0, 1000000)/1e6 < gb_reverse; $f1")
    p.chain(semis, ratio, length, rev)
    ends = p.obj(60, 290, "expr if($f1, gb_grainsize - 1, 0); if($f1, gb_grainsize - 1 - $f2, $f2)")
    p.connect(rev, 1, ends, 1)
    p.connect(rev, 0, ends, 0)
    p.connect(ends, 0, pk, 2)
    p.connect(ends, 1, pk, 3)
    # 4: duration
    dur = p.obj(330, 330, "v gb_duration")
    p.connect(t, 4, dur)
    p.connect(dur, 0, pk, 4)
    # 3: slot and table
    slot = p.obj(330, 370, "expr int(random(0, 1 + rint(gb_spread*(gb_nslots - 1))))")
    table = p.obj(330, 400, "expr $f1*4 + gb_ring[$f1]")
    tab = p.obj(330, 430, "t f f")
    tabf = p.obj(420, 460, "f")
    p.connect(t, 3, slot)
    p.chain(slot, table, tab)
    p.connect(tab, 1, tabf, 1)
    p.connect(tab, 0, pk, 1)
    # 2: envelope, pan, amp
    env_t = p.obj(60, 340, "t b b b")
    p.connect(t, 2, env_t)
    shape = p.obj(60, 470, "expr 1/if(gb_shape < 0.5, 0.5 - 0.8*gb_shape, 0.1 - 0.19*(gb_shape - 0.5)); "
                           "1/if(gb_shape < 0.5, 0.5 - 0.8*gb_shape, 0.1 + 1.79*(gb_shape - 0.5))")
    p.comment(60, 500, "attack and release fractions: Hann (0.5, 0.5) -> flat top (0.1, 0.1) -> "
              "percussive (0.005, 0.995)", 60)
    p.connect(env_t, 0, shape)
    p.connect(shape, 0, pk, 5)
    p.connect(shape, 1, pk, 6)
    pos = p.obj(200, 370, "expr 0.5 + gb_pan*(random(0, 1000001)/1e6 - 0.5)")
    gains = p.obj(200, 400, "expr cos($f1*1.5707963); cos((1 - $f1)*1.5707963)")
    p.comment(200, 430, "equal power", 12)
    p.connect(env_t, 1, pos)
    p.chain(pos, gains)
    p.connect(gains, 0, pk, 7)
    p.connect(gains, 1, pk, 8)
    amp = p.obj(500, 560, "expr gb_velocity/if(gb_normalize, sqrt(max(1, min(gb_voices, "
                          "gb_density*gb_duration/1000))), 1)")
    p.comment(500, 590, "velocity, and 1/sqrt(overlapping grains) when normalize is on", 40)
    p.connect(env_t, 2, amp)
    p.connect(amp, 0, pk, 9)
    # 1: bookkeeping: when this voice and this table are busy until
    book = p.obj(600, 470, "t b b")
    p.connect(t, 1, book)
    p.connect(book, 1, voice)
    p.connect(book, 0, steal)
    vi = p.obj(880, 460, "t f f")
    p.connect(voice, 0, vi)
    wend = p.obj(760, 540, "tabwrite gb_vend")
    wstart = p.obj(880, 540, "tabwrite gb_vstart")
    p.connect(vi, 0, wend, 1)
    p.connect(vi, 1, wstart, 1)
    st = p.obj(760, 460, "t f f")
    p.connect(steal, 0, st)
    p.connect(st, 1, pk, 10)
    until = p.obj(760, 490, f"expr gb_now + gb_duration + $f1*{STEAL_WAIT_MS} + 1")
    p.connect(st, 0, until)
    ut = p.obj(760, 515, "t f f b")
    p.connect(until, 0, ut)
    p.connect(ut, 1, wend)
    nowv = p.obj(980, 500, "v gb_now")
    p.connect(ut, 2, nowv)
    p.connect(nowv, 0, wstart)
    tabf_b = p.obj(420, 490, "t b")
    busy = p.obj(420, 520, "expr max(gb_busy[$f2], $f1); $f2")
    p.connect(ut, 0, busy)
    p.connect(tabf, 0, busy, 1)
    p.connect(tabf_b, 0, tabf)
    wbusy = p.obj(420, 560, "tabwrite gb_busy")
    p.connect(busy, 1, wbusy, 1)
    p.connect(busy, 0, wbusy)
    # make sure busy's right inlet has the table before its left fires: feed tabf first
    p.connect(book, 1, tabf_b)
    # 0: the voice number closes the list
    vout = p.obj(880, 600, "f")
    p.connect(voice, 0, vout, 1)
    p.connect(t, 0, vout)
    p.connect(vout, 0, pk)
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-slots: the grain tables, /grain writes, /model sizes, freeze

PICK_RING = ("expr $f1*4 + if(gb_busy[$f1*4 + ($f2+1)%4] <= min(gb_busy[$f1*4 + ($f2+2)%4], "
             "gb_busy[$f1*4 + ($f2+3)%4]), ($f2+1)%4, if(gb_busy[$f1*4 + ($f2+2)%4] <= "
             "gb_busy[$f1*4 + ($f2+3)%4], ($f2+2)%4, ($f2+3)%4))")


def guard_points() -> Patch:
    """Subpatch: after a grain is written at table[1..G], copy table[G] to table[0] and table[1..2] to
    table[G+1..G+2], so 4-point interpolation across the loop point reads the loop's own samples."""
    p = Patch(600, 320)
    go = p.obj(20, 20, "inlet")
    name = p.obj(300, 20, "inlet")
    p.comment(360, 20, "<- table name, then a bang", 20)
    names = p.obj(300, 50, "t s s s s")
    p.connect(name, 0, names)
    t = p.obj(20, 50, "t b b b")
    p.connect(go, 0, t)
    size = p.obj(200, 80, "v gb_grainsize")
    size_t = p.obj(200, 110, "t f f")
    plus1 = p.obj(300, 140, "+ 1")
    last = p.obj(200, 140, "f")
    p.connect(t, 2, size)
    p.connect(size, 0, size_t)
    p.connect(size_t, 1, plus1)
    p.connect(size_t, 0, last, 1)
    p.comment(20, 80, "1: table[1..2] -> table[G+1..G+2]", 20)
    head = p.obj(400, 170, "t b b")
    two, one = p.msg(460, 200, "2"), p.msg(400, 200, "1")
    head_get, head_set = p.obj(400, 230, "array get"), p.obj(400, 270, "array set")
    p.connect(t, 1, head)
    p.connect(head, 1, two)
    p.connect(head, 0, one)
    p.connect(two, 0, head_get, 1)
    p.connect(one, 0, head_get)
    p.connect(plus1, 0, head_set, 1)
    p.connect(head_get, 0, head_set)
    p.comment(20, 170, "2: table[G] -> table[0]", 20)
    tail = p.obj(20, 200, "t b b")
    n1, zero = p.msg(80, 230, "1"), p.msg(120, 230, "0")
    tail_get, tail_set = p.obj(20, 260, "array get"), p.obj(20, 290, "array set")
    p.connect(t, 0, tail)
    p.connect(tail, 1, n1)
    p.connect(tail, 1, zero)
    p.connect(n1, 0, tail_get, 1)
    p.connect(zero, 0, tail_set, 1)
    p.connect(tail, 0, last)
    p.connect(last, 0, tail_get)
    p.connect(tail_get, 0, tail_set)
    for k, obj in enumerate([head_get, head_set, tail_get, tail_set]):
        p.connect(names, k, obj, 2)
    return p


def slots() -> Patch:
    p = Patch(1000, 900)
    p.comment(20, 10, f"grainbox-slots: {MAX_SLOTS} grain slots x {RING} tables (gb_tab_<slot*4 + entry>). "
              "A new /grain is written into the entry of its slot that voices left longest ago, and only "
              "then becomes the slot's current entry (gb_ring), so voices still reading the old material "
              "finish on it: replacing a slot does not click. While freeze is on, grains wait in "
              "gb_hold_<slot> and are applied when it goes off.", 110)
    p.comment(20, 110, "in: gb_grain_in (slot samples...), gb_model_in (sr grain latent slots). "
              "out: gb_ack_out (slot checksum), gb_malformed (reason)", 110)
    tables = Patch(900, 600)
    y = 20
    for slot in range(MAX_SLOTS):
        for r in range(RING):
            tables.obj(20 + r * 170, y, f"table gb_tab_{slot * RING + r} {1024 + GUARD}")
        tables.obj(20 + RING * 170, y, f"table gb_hold_{slot} 1024")
        y += 28
    tables.obj(20, y + 10, f"table gb_ring {MAX_SLOTS}")
    tables.obj(200, y + 10, f"table gb_busy {MAX_SLOTS * RING}")
    tables.obj(380, y + 10, f"table gb_pending {MAX_SLOTS}")
    tables.comment(20, y + 40, "gb_ring: current entry of each slot; gb_busy: time (ms) until which "
                   "voices read each table; gb_pending: 1 where a held grain waits", 90)
    tables.height = y + 100
    p.subpatch(20, 160, "tables", tables)

    # write or hold one grain
    rin = p.obj(20, 210, "r gb_grain_in")
    split = p.obj(20, 240, "list split 1")
    data = p.obj(300, 240, "list store")
    p.comment(400, 240, "<- the samples wait here", 30)
    p.connect(rin, 0, split)
    p.connect(split, 1, data, 1)
    slot = p.obj(20, 270, "v gb_wslot")
    slot_t = p.obj(20, 300, "t b")
    p.connect(split, 0, slot)
    p.connect(split, 0, slot_t)
    mode = p.obj(20, 330, "expr gb_freeze")
    sel = p.obj(20, 360, "sel 0 1")
    p.chain(slot_t, mode, sel)
    p.comment(20, 390, "write", 10)
    w = p.obj(20, 420, "t b b b b")
    p.connect(sel, 0, w)
    pick = p.obj(80, 450, "expr gb_wslot; gb_ring[gb_wslot]")
    p.connect(w, 3, pick)
    ring = p.obj(80, 480, PICK_RING)
    p.connect(pick, 1, ring, 1)
    p.connect(pick, 0, ring)
    tab = p.obj(80, 510, "v gb_wtab")
    p.connect(ring, 0, tab)
    p.comment(400, 510, "the entry voices left longest ago", 20)
    tab2 = p.obj(60, 560, "v gb_wtab")
    name = p.obj(60, 590, "makefilename gb_tab_%d")
    names = p.obj(60, 620, "t s s")
    p.connect(w, 2, tab2)
    p.chain(tab2, name, names)
    p.lines[names] = "#X obj 60 620 t s s s;"
    wset = p.obj(40, 680, "array set")
    wsum = p.obj(200, 680, "array sum")
    one = p.msg(200, 650, "1")
    n_sum = p.obj(240, 650, "v gb_grainsize")
    p.comment(520, 590, "table = guard, G samples, 2 guards: [tabread4~] then loops the slot "
              "without a seam; the sum (for /ack) is over the G samples", 40)
    guard = p.subpatch(330, 680, "guard-points", guard_points())
    p.connect(names, 0, wset, 2)
    p.connect(names, 1, wsum, 2)
    p.connect(names, 2, guard, 1)
    wb = p.obj(40, 650, "t b b b b")
    on1 = p.msg(120, 650, "1")
    p.connect(on1, 0, wset, 1)
    p.connect(w, 1, wb)
    p.connect(wb, 3, on1)
    p.connect(wb, 2, data)
    p.connect(data, 0, wset)
    p.connect(wb, 1, guard)
    p.connect(wb, 0, n_sum)
    p.connect(n_sum, 0, wsum, 1)
    p.connect(wb, 0, one)
    p.connections.remove(f"#X connect {wb} 0 {n_sum} 0;")
    p.connections.remove(f"#X connect {wb} 0 {one} 0;")
    sum_t = p.obj(280, 620, "t b b")
    p.connect(wb, 0, sum_t)
    p.connect(sum_t, 1, n_sum)
    p.connect(sum_t, 0, one)
    p.connect(one, 0, wsum)
    # hold branch shares [list store]: route its output by mode with two [spigot]s
    sum_v = p.obj(200, 710, "v gb_wsum")
    p.connect(wsum, 0, sum_v)
    ok = p.obj(20, 750, "expr gb_wsum == gb_wsum && abs(gb_wsum) < 1e+30")
    p.connect(w, 0, ok)
    oksel = p.obj(20, 780, "sel 1 0")
    p.connect(ok, 0, oksel)
    commit = p.obj(20, 810, "t b b")
    p.connect(oksel, 0, commit)
    ringw = p.obj(120, 840, "expr gb_wtab - gb_wslot*4; gb_wslot")
    wring = p.obj(120, 870, "tabwrite gb_ring")
    p.connect(commit, 1, ringw)
    p.connect(ringw, 1, wring, 1)
    p.connect(ringw, 0, wring)
    bad = p.msg(200, 810, "symbol grain: non-finite samples")
    badw = p.obj(200, 840, "s gb_malformed")
    p.connect(oksel, 1, bad)
    p.connect(bad, 0, badw)
    ack = p.obj(20, 900, "expr gb_wslot; gb_wsum")
    ackp = p.obj(20, 930, "pack f f")
    quiet = p.obj(20, 960, "spigot 1")
    acks = p.obj(20, 990, "s gb_ack_out")
    p.connect(commit, 0, ack)
    p.connect(ack, 1, ackp, 1)
    p.connect(ack, 0, ackp)
    p.chain(ackp, quiet, acks)
    p.comment(110, 930, "/ack slot checksum (sum of the stored samples)", 30)

    # hold branch (freeze on)
    p.comment(560, 390, "hold (freeze)", 14)
    h = p.obj(560, 420, "t b b b b")
    p.connect(sel, 1, h)
    hslot = p.obj(620, 450, "v gb_wslot")
    hname = p.obj(620, 480, "makefilename gb_hold_%d")
    hnames = p.obj(620, 510, "t s s")
    p.connect(h, 3, hslot)
    p.chain(hslot, hname, hnames)
    hset = p.obj(560, 600, "array set")
    hsum = p.obj(700, 600, "array sum")
    p.connect(hnames, 0, hset, 2)
    p.connect(hnames, 1, hsum, 2)
    hb = p.obj(560, 560, "t b b")
    p.connect(h, 2, hb)
    hdata = p.obj(560, 570, "list store")
    p.lines[hdata] = "#X obj 560 630 list store;"
    p.connect(split, 1, hdata, 1)  # its own copy of the samples
    p.connect(hb, 1, hdata)
    p.connect(hdata, 0, hset)
    p.connect(hb, 0, hsum)
    p.connect(hsum, 0, sum_v)
    pend = p.obj(700, 450, "expr 1; gb_wslot")
    wpend = p.obj(700, 480, "tabwrite gb_pending")
    p.connect(h, 1, pend)
    p.connect(pend, 1, wpend, 1)
    p.connect(pend, 0, wpend)
    p.connect(h, 0, ack)
    return _slots_release(p, quiet)


def _slots_release(p: Patch, quiet: int) -> Patch:
    """Freeze going off applies every held grain (without a second /ack); /model sizes the tables."""
    p.comment(560, 700, "freeze off: apply the held grains", 20)
    fr = p.obj(560, 730, "r gb_freeze")
    off = p.obj(560, 760, "sel 0")
    rt = p.obj(560, 790, "t b b b")
    p.chain(fr, off, rt)
    mute = p.msg(700, 820, "0")
    unmute = p.msg(560, 940, "1")
    p.connect(rt, 2, mute)
    p.connect(rt, 0, unmute)
    p.connect(mute, 0, quiet, 1)
    p.connect(unmute, 0, quiet, 1)
    n = p.msg(620, 820, str(MAX_SLOTS))
    p.connect(rt, 1, n)
    until = p.obj(620, 850, "until")
    cnt = p.obj(620, 880, "f")
    inc = p.obj(660, 880, "+ 1")
    p.chain(n, until, cnt)
    p.connect(cnt, 0, inc)
    p.connect(inc, 0, cnt, 1)
    reset = p.msg(700, 850, "0")
    p.connect(rt, 2, reset)
    p.connect(reset, 0, cnt, 1)
    pending = p.obj(620, 910, "expr if(gb_pending[$f1], $f1, -1)")
    p.connect(cnt, 0, pending)
    has = p.obj(620, 940, "moses 0")
    p.connect(pending, 0, has)
    ht = p.obj(680, 970, "t f f f")
    p.connect(has, 1, ht)
    clear = p.obj(800, 1000, "expr 0; $f1")
    wclear = p.obj(800, 1030, "tabwrite gb_pending")
    p.connect(ht, 2, clear)
    p.connect(clear, 1, wclear, 1)
    p.connect(clear, 0, wclear)
    hn = p.obj(680, 1000, "makefilename gb_hold_%d")
    p.connect(ht, 1, hn)
    get = p.obj(680, 1060, "array get")
    p.connect(hn, 0, get, 2)
    gb = p.obj(680, 1030, "t b")
    p.connect(ht, 0, gb)
    p.connect(gb, 0, get)
    pre = p.obj(680, 1090, "list prepend")
    p.connect(ht, 0, pre, 1)
    p.lines[gb] = "#X obj 620 1030 t b;"
    p.connect(get, 0, pre)
    again = p.obj(680, 1120, "s gb_grain_in")
    p.connect(pre, 0, again)
    # ordering: [t f f f] fires clear, name, then the slot into [list prepend] right inlet AND the bang:
    # the prepend's right inlet must be set before [array get] outputs, so the bang comes from a
    # separate [t b f] below.
    p.connections.remove(f"#X connect {ht} 0 {pre} 1;")
    p.connections.remove(f"#X connect {ht} 0 {gb} 0;")
    tbf = p.obj(560, 1000, "t b f")
    p.connect(ht, 0, tbf)
    p.connect(tbf, 1, pre, 1)
    p.connect(tbf, 0, gb)

    # /model
    p.comment(20, 1040, "/model sr grain latent slots: size every table, remember the rates", 40)
    mi = p.obj(20, 1080, "r gb_model_in")
    unp = p.obj(20, 1110, "unpack f f f f")
    p.connect(mi, 0, unp)
    nsl = p.obj(260, 1140, f"clip 1 {MAX_SLOTS}")
    vns = p.obj(260, 1170, "v gb_nslots")
    p.connect(unp, 3, nsl)
    p.chain(nsl, vns)
    sr = p.obj(20, 1140, "v gb_modelsr")
    p.connect(unp, 0, sr)
    g = p.obj(120, 1140, "t f f f")
    p.connect(unp, 1, g)
    vg = p.obj(120, 1170, "v gb_grainsize")
    p.connect(g, 2, vg)
    sg = p.obj(120, 1320, "s gb_grainsize")
    p.connect(g, 0, sg)
    loop_n = p.msg(160, 1200, str(MAX_SLOTS * (RING + 1)))
    p.connect(g, 1, loop_n)
    u2 = p.obj(160, 1230, "until")
    c2 = p.obj(160, 1260, "f")
    i2 = p.obj(200, 1260, "+ 1")
    z2 = p.msg(250, 1200, "0")
    p.connect(g, 1, z2)
    p.connect(z2, 0, c2, 1)
    p.chain(loop_n, u2, c2)
    p.connect(c2, 0, i2)
    p.connect(i2, 0, c2, 1)
    p.connections.remove(f"#X connect {g} 1 {loop_n} 0;")
    p.connections.remove(f"#X connect {g} 1 {z2} 0;")
    gt = p.obj(160, 1170, "t b b")
    p.connect(g, 1, gt)
    p.connect(gt, 1, z2)
    p.connect(gt, 0, loop_n)
    nm = p.obj(160, 1290, f"expr $f1 < {MAX_SLOTS * RING}; $f1 - {MAX_SLOTS * RING}*($f1 >= "
                          f"{MAX_SLOTS * RING})")
    p.connect(c2, 0, nm)
    tn = p.obj(160, 1320, "pack f f")
    p.connect(nm, 1, tn, 1)
    p.connect(nm, 0, tn)
    rt2 = p.obj(160, 1350, "route 1 0")
    p.connect(tn, 0, rt2)
    mt = p.obj(160, 1380, "makefilename gb_tab_%d")
    mh = p.obj(330, 1380, "makefilename gb_hold_%d")
    p.connect(rt2, 0, mt)
    p.connect(rt2, 1, mh)
    size = p.obj(160, 1440, "pack s f")
    hsize = p.obj(330, 1440, "pack s f")
    plus = p.obj(260, 1410, f"+ {GUARD}")
    p.connect(mt, 0, size)
    p.connect(mh, 0, hsize)
    p.connect(g, 2, plus)
    p.connect(plus, 0, size, 1)
    p.connect(g, 2, hsize, 1)
    resize = p.msg(160, 1470, "; $1 resize $2")
    p.connect(size, 0, resize)
    p.connect(hsize, 0, resize)
    p.height = 1500
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-osc pd_port runtime_port: the OSC link to the runtime


def check(spec: str, count_expr: str | None = None) -> Patch:
    """Subpatch: passes a list on the left outlet if its atoms match spec ('f' number, 's' symbol) and
    its length is right; anything else bangs the right outlet."""
    p = Patch(600, 400)
    inlet = p.obj(20, 20, "inlet")
    as_list = p.obj(80, 20, "list")
    t = p.obj(20, 50, "t l l l")
    p.connect(inlet, 0, as_list)
    p.connect(as_list, 0, t)
    length = p.obj(300, 80, "list length")
    cnt = p.obj(300, 110, f"expr {count_expr or f'$f1 == {len(spec)}'}")
    ok = p.obj(20, 300, "f")
    p.connect(t, 2, length)
    p.connect(length, 0, cnt)
    p.connect(cnt, 0, ok, 1)
    zero = p.msg(200, 260, "0")
    p.connect(zero, 0, ok, 1)
    fan = p.obj(160, 80, "t" + " l" * max(1, len(spec)))
    p.connect(t, 1, fan)
    for k, kind in enumerate(spec):
        x = 160 + 90 * k
        if k:
            sp = p.obj(x, 110, f"list split {k}")
            p.connect(fan, k, sp)
            head = p.obj(x, 140, "list split 1")
            p.connect(sp, 1, head)
        else:
            head = p.obj(x, 140, "list split 1")
            p.connect(fan, 0, head)
        trim = p.obj(x, 170, "list trim")
        route = p.obj(x, 200, "route float")
        p.connect(head, 0, trim)
        p.chain(trim, route)
        p.connect(route, 1 if kind == "f" else 0, zero)
    store = p.obj(20, 330, "list store")
    tb = p.obj(20, 80, "t b l")
    p.connect(t, 0, tb)
    p.connect(tb, 1, store, 1)
    p.connect(tb, 0, ok)
    sel = p.obj(20, 360, "sel 1")
    p.connections.append(f"#X connect {ok} 0 {sel} 0;")
    store_b = p.obj(20, 390, "t b")
    p.connect(sel, 0, store_b)
    p.connect(store_b, 0, store)
    o1 = p.obj(20, 420, "outlet")
    o2 = p.obj(120, 420, "outlet")
    p.connect(store, 0, o1)
    p.connect(sel, 1, o2)
    p.comment(180, 420, f"<- ok ({spec or 'no arguments'}), malformed", 40)
    return p


MAX_PACKET = LIMITS["grain_size"]["max"] * 5 + 64  # the largest /grain /model allows, in bytes


def finite_check() -> Patch:
    """Subpatch: drop a packet holding a NaN or infinite float, which [oscparse] would read as 0."""
    p = Patch(700, 460)
    p.comment(20, 10, "[oscparse] turns NaN and inf into 0, so they are caught here, in the raw bytes: "
              "a 4-byte word whose first byte is 0x7f or 0xff and second byte >= 0x80 is a non-finite "
              "float (or a negative int, which no message of docs/osc.md carries; ASCII and UTF-8 text "
              "never look like this).", 90)
    inlet = p.obj(20, 90, "inlet")
    t = p.obj(20, 120, "t b l l")
    p.connect(inlet, 0, t)
    store = p.obj(20, 400, "list store")
    p.connect(t, 1, store, 1)
    split = p.obj(320, 150, "t l l")
    p.connect(t, 2, split)
    length = p.obj(420, 180, "list length")
    words = p.obj(420, 210, "expr int($f1/4)")
    nwords = p.obj(420, 240, "v gb_pkt_words")
    p.connect(split, 1, length)
    p.chain(length, words, nwords)
    pkt = p.obj(320, 270, "array set gb_osc_pkt")
    p.connect(split, 0, pkt)
    p.obj(320, 300, f"table gb_osc_pkt {MAX_PACKET}")
    scan = p.obj(20, 150, "t b b b")
    p.connect(t, 0, scan)
    zero = p.msg(120, 180, "0")
    bad_v = p.obj(120, 210, "v gb_pkt_bad")
    p.connect(scan, 2, zero)
    p.connect(zero, 0, bad_v)
    n = p.obj(60, 210, "v gb_pkt_words")
    p.connect(scan, 1, n)
    until = p.obj(60, 240, "until")
    cnt = p.obj(60, 270, "f")
    inc = p.obj(100, 270, "+ 1")
    p.connect(zero, 0, cnt, 1)
    p.connect(n, 0, until)
    p.connect(until, 0, cnt)
    p.connect(cnt, 0, inc)
    p.connect(inc, 0, cnt, 1)
    test = p.obj(60, 300, "expr gb_osc_pkt[4*$f1] % 128 == 127 && gb_osc_pkt[4*$f1 + 1] >= 128")
    p.connect(cnt, 0, test)
    hit = p.obj(60, 330, "sel 1")
    one = p.msg(60, 360, "1")
    p.connect(test, 0, hit)
    p.connect(hit, 0, one)
    p.connect(one, 0, bad_v)
    p.connect(hit, 0, until, 1)
    verdict = p.obj(20, 360, "expr gb_pkt_bad")
    p.connect(scan, 0, verdict)
    sel = p.obj(20, 380, "sel 0")
    p.connect(verdict, 0, sel)
    p.lines[store] = "#X obj 20 410 list store;"
    p.connect(sel, 0, store)
    out = p.obj(20, 440, "outlet")
    p.connect(store, 0, out)
    why = p.msg(160, 410, "non-finite float")
    bad = p.obj(160, 440, "s gb_malformed")
    p.connect(sel, 1, why)
    p.connect(why, 0, bad)
    return p


def size_check() -> Patch:
    """Subpatch: drop a packet longer than the longest message the current model allows, before the
    costly byte scan and [oscparse] see it (a flood of 64 KiB datagrams would otherwise keep Pd busy)."""
    p = Patch(620, 330)
    p.comment(20, 10, "The longest valid packet is a /grain: 8 bytes of address, the type tags (',i' and "
              "a 'f' per sample, padded to 4) and 4 bytes per value, under 5 * grainsize + 24 bytes; "
              "every other message fits in 256.", 80)
    inlet = p.obj(20, 80, "inlet")
    t = p.obj(20, 110, "t b l l")
    p.connect(inlet, 0, t)
    length = p.obj(300, 140, "list length")
    lt = p.obj(300, 170, "t f f")
    p.connect(t, 2, length)
    p.chain(length, lt)
    fits = p.obj(300, 200, "expr $f1 <= max(256, 5 * gb_grainsize + 24)")
    p.connect(lt, 0, fits)
    flag = p.obj(20, 200, "f")
    p.connect(fits, 0, flag, 1)
    size = p.obj(440, 200, "f")
    p.connect(lt, 1, size, 1)
    store = p.obj(160, 240, "list store")
    p.connect(t, 1, store, 1)
    p.connect(t, 0, flag)
    sel = p.obj(20, 240, "sel 1")
    p.connect(flag, 0, sel)
    p.connect(sel, 0, store)
    out = p.obj(160, 280, "outlet")
    p.connect(store, 0, out)
    refuse = p.obj(300, 240, "t b")
    p.connect(sel, 1, refuse)
    p.connect(refuse, 0, size)
    why = p.msg(440, 240, "oversize packet $1 bytes")
    p.connect(size, 0, why)
    p.connect(why, 0, p.obj(440, 280, "s gb_malformed"))
    return p


def shape_check() -> Patch:
    """Subpatch: drop what cannot be one plain OSC message before anything parses it: a bundle (its
    elements would play at once, whatever their timetag says), a packet not starting with '/', and one
    whose length is not a multiple of 4 (cut short on the way)."""
    p = Patch(700, 330)
    p.comment(20, 10, "An OSC message starts with '/' (47) and is a whole number of 4-byte words; a bundle "
              "starts with '#' (35) and is refused: the box takes single messages only.", 90)
    inlet = p.obj(20, 70, "inlet")
    t = p.obj(20, 100, "t l l l")
    p.connect(inlet, 0, t)
    length = p.obj(400, 130, "list length")
    p.connect(t, 2, length)
    size = p.obj(400, 160, "t f f")
    p.connect(length, 0, size)
    store = p.obj(200, 130, "list store")
    p.connect(t, 1, store, 1)
    first = p.obj(20, 130, "list split 1")
    p.connect(t, 0, first)
    verdict = p.obj(20, 160, "expr if($f1 == 35, 1, if($f1 != 47, 2, if($f2 % 4 != 0, 3, 0)))")
    p.connect(size, 1, verdict, 1)
    p.connect(first, 0, verdict)
    sel = p.obj(20, 190, "sel 0 1 2 3")
    p.connect(verdict, 0, sel)
    p.connect(sel, 0, store)
    p.connect(store, 0, p.obj(200, 300, "outlet"))
    bad = p.obj(400, 300, "s gb_malformed")
    reasons = [(300, "bundle"), (400, "not an OSC packet"), (500, "truncated packet")]
    for outlet, (x, why) in enumerate(reasons, start=1):
        kept = p.obj(x, 220, "f")  # this packet's length, reported if it is dropped for this reason
        p.connect(size, 0, kept, 1)
        p.connect(sel, outlet, kept)
        msg = p.msg(x, 250, f"{why} $1 bytes")
        p.connect(kept, 0, msg)
        p.connect(msg, 0, bad)
    return p


def parse_check() -> Patch:
    """Subpatch: [oscparse], and a count for a packet it refuses (it prints its own error and sends
    nothing out): what passes the shape check but is cut short inside, or has a malformed type string."""
    p = Patch(620, 300)
    p.comment(20, 10, "The flag is set before [oscparse] and cleared by anything it sends out; still set "
                      "afterwards means the packet was refused.", 80)
    inlet = p.obj(20, 60, "inlet")
    t = p.obj(20, 90, "t b l l b")
    p.connect(inlet, 0, t)
    one = p.msg(400, 120, "1")
    flag = p.obj(20, 210, "f")
    p.connect(t, 3, one)
    p.connect(one, 0, flag, 1)
    length = p.obj(280, 120, "list length")
    size = p.obj(280, 150, "f")
    p.connect(t, 2, length)
    p.connect(length, 0, size, 1)
    parse = p.obj(120, 120, "oscparse")
    p.connect(t, 1, parse)
    passed = p.obj(120, 150, "t a b")
    p.connect(parse, 0, passed)
    zero = p.msg(220, 180, "0")
    p.connect(passed, 1, zero)
    p.connect(zero, 0, flag, 1)
    p.connect(passed, 0, p.obj(120, 270, "outlet"))
    p.connect(t, 0, flag)
    refused = p.obj(20, 240, "sel 1")
    p.connect(flag, 0, refused)
    p.connect(refused, 0, size)
    why = p.msg(280, 210, "unparsable packet $1 bytes")
    p.connect(size, 0, why)
    p.connect(why, 0, p.obj(280, 240, "s gb_malformed"))
    return p


def reply_socket_drop() -> Patch:
    """Subpatch: count whatever arrives at [netsend]'s own socket. Pd 0.53 cannot bind it to 127.0.0.1
    (it takes the wildcard address when it first sends), and nothing should ever be sent to it."""
    p = Patch(520, 200)
    p.comment(20, 10, "Nothing is ever sent to [netsend]'s socket: whatever arrives is dropped and "
                      "counted.", 60)
    inlet = p.obj(20, 60, "inlet")
    length = p.obj(20, 90, "list length")
    why = p.msg(20, 120, "datagram at the reply socket $1 bytes")
    p.chain(inlet, length, why)
    p.connect(why, 0, p.obj(20, 150, "s gb_malformed"))
    return p


def record_name_check() -> Patch:
    """Subpatch: a /record name must be a plain file name, so a sender can only write into the
    recordings folder: 1 to 64 bytes, no '/' or '\\', no control characters, not starting with '.'."""
    p = Patch(760, 460)
    p.comment(20, 10, "symbol in; left: the name if it is a plain file name, right: a bang if not. The "
              "bytes are checked one by one (the [list split 1] loop; at most 64 deep).", 90)
    inlet = p.obj(20, 60, "inlet")
    t = p.obj(20, 90, "t b s s")
    p.connect(inlet, 0, t)
    name = p.obj(160, 330, "symbol")
    p.connect(t, 1, name, 1)
    codes = p.obj(300, 120, "list fromsymbol")
    p.connect(t, 2, codes)
    fan = p.obj(300, 150, "t l l l b")
    p.connect(codes, 0, fan)
    bad = p.obj(20, 330, "f")
    zero = p.msg(620, 180, "0")
    one = p.msg(620, 300, "1")
    p.connect(fan, 3, zero)
    p.connect(zero, 0, bad, 1)
    p.connect(one, 0, bad, 1)
    # length 1..64, and the byte loop only runs on names that short
    length = p.obj(480, 180, "list length")
    short = p.obj(480, 210, "expr $f1 >= 1 && $f1 <= 64")
    p.connect(fan, 2, length)
    p.chain(length, short)
    lsel = p.obj(480, 240, "sel 0")
    p.connect(short, 0, lsel)
    p.connect(lsel, 0, one)
    # first byte not '.' (no hidden files, no ..)
    first = p.obj(380, 180, "list split 1")
    p.connect(fan, 1, first)
    dot = p.obj(380, 210, "sel 46")
    p.connect(first, 0, dot)
    p.connect(dot, 0, one)
    gate = p.obj(300, 240, "spigot")
    p.connect(short, 0, gate, 1)
    p.connect(fan, 0, gate)
    loop = p.obj(300, 270, "list split 1")
    again = p.obj(420, 270, "t l")
    p.connect(gate, 0, loop)
    p.connect(loop, 1, again)
    p.connect(again, 0, loop)
    byte = p.obj(300, 300, "expr $f1 < 32 || $f1 == 47 || $f1 == 92 || $f1 == 127")
    p.connect(loop, 0, byte)
    bsel = p.obj(300, 330, "sel 1")
    p.connect(byte, 0, bsel)
    p.connect(bsel, 0, one)
    verdict = p.obj(20, 360, "sel 0")
    p.connect(t, 0, bad)
    p.connect(bad, 0, verdict)
    p.connect(verdict, 0, name)
    p.connect(name, 0, p.obj(160, 390, "outlet"))
    refuse = p.obj(300, 390, "t b")  # outlets go left to right by position: ok, then refused
    p.connect(verdict, 1, refuse)
    p.connect(refuse, 0, p.obj(300, 420, "outlet"))
    return p


def record_handler() -> Patch:
    """Subpatch: /record on name. 1 starts writing <recordings folder>/name, 0 stops; the folder is set
    inside Pd only (gb_record_dir), never over OSC."""
    p = Patch(760, 460)
    p.comment(20, 10, "The recordings folder is the patch's own until gb_record_dir names another (a "
              "message in Pd, or pd -send 'gb_record_dir /home/me/takes'); OSC only picks a plain file "
              "name in it, so no sender can write anywhere else.", 90)
    inlet = p.obj(20, 80, "inlet")
    unpack = p.obj(20, 110, "unpack f s")
    p.connect(inlet, 0, unpack)
    name = p.obj(180, 170, "symbol")
    p.connect(unpack, 1, name, 1)
    on = p.obj(20, 140, "sel 0 1")
    p.connect(unpack, 0, on)
    stop = p.msg(20, 170, "0")
    p.connect(on, 0, stop)
    record_on = p.obj(20, 400, "s gb_record_on")
    p.connect(stop, 0, record_on)
    p.connect(on, 1, name)
    bad = p.obj(560, 400, "s gb_malformed")
    wrong_on = p.msg(560, 170, "record on must be 0 or 1")
    p.connect(on, 2, wrong_on)
    p.connect(wrong_on, 0, bad)
    check = p.subpatch(180, 200, "plain-file-name", record_name_check())
    p.connect(name, 0, check)
    refused = p.msg(360, 230, "record name must be a plain file name")
    p.connect(check, 1, refused)
    p.connect(refused, 0, bad)
    ok = p.obj(180, 230, "t b s")
    p.connect(check, 0, ok)
    codes = p.obj(230, 260, "list fromsymbol")
    p.connect(ok, 1, codes)
    prefix = p.obj(230, 290, "list prepend 46 47")
    p.connect(codes, 0, prefix)
    as_symbol = p.obj(230, 320, "list tosymbol")
    p.connect(prefix, 0, as_symbol)
    p.connect(as_symbol, 0, p.obj(230, 400, "s gb_record_path"))
    start = p.msg(180, 360, "1")
    p.connect(ok, 0, start)
    p.connect(start, 0, record_on)
    # the folder, as bytes plus '/', is what [list prepend] puts before the name; an empty one is refused
    folder = p.obj(440, 260, "r gb_record_dir")
    as_symbol_dir = p.obj(580, 260, "symbol")  # pd -send 'gb_record_dir /x' delivers /x as a selector
    fcodes = p.obj(440, 290, "list fromsymbol")
    ft = p.obj(440, 320, "t l l")
    p.connect(folder, 0, as_symbol_dir)
    p.connect(as_symbol_dir, 0, fcodes)
    p.chain(fcodes, ft)
    flen = p.obj(560, 350, "list length")
    p.connect(ft, 1, flen)
    given = p.obj(440, 380, "spigot")
    p.connect(flen, 0, given, 1)
    p.connect(ft, 0, given)
    slash = p.obj(440, 410, "list append 47")
    p.connect(given, 0, slash)
    p.connect(slash, 0, prefix, 1)
    return p


def drop_log(burst: int = 20, quiet_ms: int = 10000) -> Patch:
    """Subpatch: print dropped messages without letting a flood fill the log. The first `burst` print a
    line each; past that one line a second says how many more and the latest reason; `quiet_ms` without
    a drop restores the burst. The count itself (gb_malformed_count) stays exact."""
    p = Patch(760, 420)
    p.comment(20, 10, f"reason in. The first {burst} drops print a line each, then one line a second "
              f"sums up the rest; {quiet_ms // 1000} s without a drop restores the {burst}.", 90)
    inlet = p.obj(20, 60, "inlet")
    as_list = p.obj(100, 60, "list")  # reasons come as messages ("non-finite float"): make them lists
    t = p.obj(20, 90, "t b l b")
    p.connect(inlet, 0, as_list)
    p.connect(as_list, 0, t)
    quiet = p.obj(560, 120, f"delay {quiet_ms}")
    refill = p.msg(560, 150, str(burst))
    p.connect(t, 2, quiet)
    p.connect(quiet, 0, refill)
    latest = p.obj(300, 280, "list store")
    p.connect(t, 1, latest, 1)
    budget = p.obj(20, 130, f"f {burst}")
    p.connect(refill, 0, budget, 1)
    p.connect(t, 0, budget)
    room = p.obj(20, 160, "moses 1")
    p.connect(budget, 0, room)
    spend = p.obj(160, 190, "- 1")
    p.connect(room, 1, spend)
    p.connect(spend, 0, budget, 1)
    each = p.obj(160, 220, "t b")
    p.connect(room, 1, each)
    one = p.obj(160, 250, "list store")
    p.connect(t, 1, one, 1)
    p.connect(each, 0, one)
    prefix = p.obj(160, 340, "list prepend dropped")
    p.connect(one, 0, prefix)
    trim = p.obj(160, 370, "list trim")
    p.connect(prefix, 0, trim)
    p.connect(trim, 0, p.obj(160, 400, "print grainbox"))
    # past the burst: count, and sum up once a second
    held = p.obj(20, 190, "t b b")
    p.connect(room, 0, held)
    more = p.obj(20, 250, "f")
    more_inc = p.obj(60, 250, "+ 1")
    more_now = p.obj(100, 280, "f")
    p.connect(held, 1, more)
    p.connect(more, 0, more_inc)
    p.connect(more_inc, 0, more, 1)
    p.connect(more_inc, 0, more_now, 1)
    pending = p.obj(20, 220, "f")
    p.connect(held, 0, pending)
    idle = p.obj(300, 160, "sel 0")
    p.connect(pending, 0, idle)
    arm = p.obj(300, 190, "t b b")
    p.connect(idle, 0, arm)
    armed = p.msg(400, 190, "1")
    p.connect(arm, 1, armed)
    p.connect(armed, 0, pending, 1)
    second = p.obj(300, 220, "delay 1000")
    p.connect(arm, 0, second)
    report = p.obj(300, 250, "t b b b")
    p.connect(second, 0, report)
    p.connect(report, 2, more_now)
    words = p.msg(460, 300, "dropped $1 more in the last second - latest")
    p.connect(more_now, 0, words)
    summary = p.obj(300, 340, "list prepend")
    p.connect(words, 0, summary, 1)
    p.connect(report, 1, latest)
    p.connect(latest, 0, summary)
    strim = p.obj(300, 370, "list trim")
    p.connect(summary, 0, strim)
    p.connect(strim, 0, p.obj(300, 400, "print grainbox"))
    reset = p.msg(460, 250, "0")
    p.connect(report, 0, reset)
    p.connect(reset, 0, more, 1)
    p.connect(reset, 0, pending, 1)
    return p


def osc() -> Patch:
    p = Patch(1200, 900)
    p.comment(20, 10, "grainbox-osc pd_port runtime_port: the OSC link (docs/osc.md). Listens on "
              "127.0.0.1:pd_port (default 9001) and sends to 127.0.0.1:runtime_port (default 9000). "
              "Every incoming message is checked (address, count, types, ranges) before it reaches the "
              "engine; anything else is dropped, counted and printed, and the patch plays on. Raw "
              "packets can also be injected on gb_osc_bytes (the render harness does).", 110)
    # Ports from `pd -send "gb_ports ..."` (delivered after the patch has loaded, before the scheduler
    # starts) are applied at once; the creation arguments or defaults only one tick after load, and only
    # if no gb_ports came first: Pd never binds the default port when it was told another, and the
    # first /hello goes to the right runtime.
    lb = p.obj(20, 80, "loadbang")
    tick = p.obj(20, 110, "del 0")
    started = p.obj(20, 140, "t b b")
    unset = p.obj(60, 170, "spigot 1")
    lt = p.obj(60, 200, "t b b b")
    p.chain(lb, tick, started)
    p.connect(started, 1, unset)
    p.connect(unset, 0, lt)
    rport = p.obj(300, 170, "f $2")
    rdef = p.obj(300, 200, "expr if($f1 > 0, $f1, 9000)")
    conn = p.msg(300, 230, "disconnect, connect 127.0.0.1 $1")
    p.connect(lt, 2, rport)
    p.chain(rport, rdef, conn)
    pport = p.obj(160, 170, "f $1")
    pdef = p.obj(160, 200, "expr if($f1 > 0, $f1, 9001)")
    listen = p.msg(160, 230, "listen $1 127.0.0.1")
    p.connect(lt, 1, pport)
    p.chain(pport, pdef, listen)
    ports = p.obj(800, 80, "r gb_ports")
    ports_t = p.obj(800, 110, "t b l")
    ports_u = p.obj(860, 140, "unpack f f")
    p.comment(960, 80, "pd -send 'gb_ports 9001 9000' sets both ports", 24)
    p.connect(ports, 0, ports_t)
    p.connect(ports_t, 1, ports_u)
    p.connect(ports_u, 0, pport, 1)
    p.connect(ports_u, 1, rport, 1)
    apply = p.obj(800, 170, "t b b b")
    p.connect(ports_t, 0, apply)
    told = p.msg(620, 110, "0")
    p.connect(apply, 2, told)
    p.connect(told, 0, unset, 1)
    p.connect(apply, 1, rport)
    p.connect(apply, 0, pport)
    recv = p.obj(160, 270, "netreceive -u -b")
    p.connect(listen, 0, recv)
    send = p.obj(300, 820, "netsend -u -b")
    p.connect(conn, 0, send)
    inject = p.obj(20, 240, "r gb_osc_bytes")
    finite = p.subpatch(20, 280, "finite", finite_check())
    parse = p.subpatch(20, 310, "parse", parse_check())
    size = p.subpatch(240, 300, "size", size_check())
    shape = p.subpatch(240, 330, "shape", shape_check())
    p.connect(recv, 0, size)
    p.connect(inject, 0, size)
    p.connect(size, 0, shape)
    p.connect(shape, 0, finite)
    p.connect(finite, 0, parse)
    p.connect(send, 1, p.subpatch(440, 850, "reply_socket", reply_socket_drop()))
    trim = p.obj(20, 340, "list trim")
    route = p.obj(20, 370, "route model grain param trigger record ping pong")
    p.chain(parse, trim, route)
    # hello: on load and every 2 s until a /model arrives
    metro = p.obj(20, 200, "metro 2000")
    p.connect(started, 0, metro)
    hello = p.obj(20, 790, "oscformat hello")
    p.connect(metro, 0, hello)
    p.connect(hello, 0, send)
    p.comment(560, 110, "/hello on load and every 2 s until the first /model", 30)
    bad = p.obj(900, 790, "s gb_malformed")
    # unknown address
    unknown = p.obj(900, 410, "list prepend unknown address")
    unk2 = p.obj(900, 440, "list split 3")
    p.connect(route, 7, unknown)
    p.chain(unknown, unk2)
    p.connect(unk2, 0, bad)
    p.connect(unk2, 2, bad)

    def reject(src: int, outlet: int, x: int, y: int, why: str) -> None:
        m = p.msg(x, y, why)
        p.connect(src, outlet, m)
        p.connect(m, 0, bad)

    # /model
    cm = p.subpatch(20, 410, "check-iiii", check("ffff"))
    p.connect(route, 0, cm)
    reject(cm, 1, 20, 440, "model wants sr grain latent slots")
    mt = p.obj(20, 470, "t l l")
    p.connect(cm, 0, mt)
    sr, grain, slots = LIMITS["sample_rate"], LIMITS["grain_size"], LIMITS["slots"]
    rng = p.obj(20, 500, f"expr $f1 == int($f1) && $f1 >= {sr['min']} && $f1 <= {sr['max']} && "
                         f"$f2 == int($f2) && $f2 >= {grain['min']} && $f2 <= {grain['max']} && $f3 >= 0 && "
                         f"$f4 == int($f4) && $f4 >= {slots['min']} && $f4 <= {slots['max']}")
    p.connect(mt, 0, rng)
    mstore = p.obj(20, 560, "list store")
    p.connect(mt, 1, mstore, 1)
    msel = p.obj(20, 530, "sel 1 0")
    p.connect(rng, 0, msel)
    mb = p.obj(20, 590, "t b b")
    p.connect(msel, 0, mb)
    reject(msel, 1, 100, 560, "model out of range")
    stop = p.msg(100, 620, "stop")
    p.connect(mb, 0, stop)
    p.connect(stop, 0, metro)
    p.connect(mb, 1, mstore)
    # right to left: apply the model, show it, then tell the runtime it was accepted (/model_ok)
    mt2 = p.obj(20, 650, "t l l l")
    p.connect(mstore, 0, mt2)
    ms = p.obj(20, 680, "s gb_model_in")
    p.connect(mt2, 2, ms)
    mshow = p.obj(120, 680, "unpack f f f f")
    p.connect(mt2, 1, mshow)
    accepted = p.obj(460, 760, "oscformat model_ok")
    p.connect(mt2, 0, accepted)
    p.connect(accepted, 0, send)
    for k, n in enumerate(["sr", "grain", "latent", "slots"]):
        s = p.obj(120 + 80 * k, 710 + 0 * k, f"s gb_{n}_show")
        p.lines[s] = f"#X obj {120 + 10 * k} {710 + 25 * k} s gb_{n}_show;"
        p.connect(mshow, k, s)
    # /grain
    cg = p.subpatch(240, 410, "check-grain", check("f", "$f1 == gb_grainsize + 1"))
    p.connect(route, 1, cg)
    reject(cg, 1, 240, 440, "grain wants slot and grainsize samples")
    gt = p.obj(240, 470, "t l l")
    p.connect(cg, 0, gt)
    gs = p.obj(320, 500, "list split 1")
    p.connect(gt, 0, gs)
    gok = p.obj(320, 530, "expr $f1 == int($f1) && $f1 >= 0 && $f1 < gb_nslots")
    p.connect(gs, 0, gok)
    gstore = p.obj(240, 590, "list store")
    p.connect(gt, 1, gstore, 1)
    gsel = p.obj(240, 560, "sel 1 0")
    p.connect(gok, 0, gsel)
    p.connect(gsel, 0, gstore)
    reject(gsel, 1, 330, 590, "grain slot out of range")
    gsend = p.obj(240, 620, "s gb_grain_in")
    p.connect(gstore, 0, gsend)
    # [t l l] fires right to left: store the list first, then check the slot and release it
    # /param
    cp = p.subpatch(460, 410, "check-sf", check("sf"))
    p.connect(route, 2, cp)
    reject(cp, 1, 460, 440, "param wants name value")
    pt = p.obj(460, 470, "list split 1")
    p.connect(cp, 0, pt)
    val = p.obj(560, 500, "list trim")
    p.connect(pt, 1, val)
    vstore = p.obj(560, 530, "f")
    p.connect(val, 0, vstore, 1)
    search = p.obj(460, 500, "text search gb_param_names")
    p.connect(pt, 0, search)
    known = p.obj(460, 530, "moses 0")
    p.connect(search, 0, known)
    reject(known, 0, 400, 560, "param unknown name")
    getn = p.obj(520, 560, "text get gb_param_names")
    p.connect(known, 1, getn)
    mk = p.obj(520, 590, "makefilename gb_%s_in")
    p.connect(getn, 0, mk)
    pb = p.obj(520, 620, "t b s")
    p.connect(mk, 0, pb)
    psend = p.obj(560, 710, "s")
    p.connect(pb, 1, psend, 1)
    p.connect(pb, 0, vstore)
    fin = p.obj(560, 650, "moses -1e+30")
    fin2 = p.obj(600, 680, "moses 1e+30")
    p.connect(vstore, 0, fin)
    p.connect(fin, 1, fin2)
    p.connect(fin2, 0, psend)
    reject(fin, 0, 700, 650, "param value not finite")
    reject(fin2, 1, 700, 680, "param value not finite")
    # /trigger
    ct = p.subpatch(700, 410, "check-none", check(""))
    p.connect(route, 3, ct)
    reject(ct, 1, 700, 440, "trigger takes no arguments")
    tb = p.obj(700, 470, "s gb_trigger")
    tbang = p.obj(780, 470, "t b")
    p.connect(ct, 0, tbang)
    p.connect(tbang, 0, tb)
    # /record
    cr = p.subpatch(700, 510, "check-is", check("fs"))
    p.connect(route, 4, cr)
    reject(cr, 1, 780, 540, "record wants on path")
    rec = p.subpatch(700, 570, "record", record_handler())
    p.connect(cr, 0, rec)
    # /ping -> /pong
    cpi = p.subpatch(900, 470, "check-ping", check("f"))
    p.connect(route, 5, cpi)
    reject(cpi, 1, 900, 500, "ping wants an id")
    pong = p.obj(900, 530, "oscformat -f i pong")
    p.connect(cpi, 0, pong)
    p.connect(pong, 0, send)
    # /pong (answer to our /ping): latency
    cpo = p.subpatch(1040, 470, "check-pong", check("f"))
    p.connect(route, 6, cpo)
    reject(cpo, 1, 1040, 500, "pong wants an id")
    lat = p.obj(1040, 560, "timer")
    p.connect(cpo, 0, lat, 1)
    lats = p.obj(1040, 590, "s gb_latency_show")
    p.connect(lat, 0, lats)
    pingr = p.obj(1040, 250, "r gb_ping_runtime")
    pid = p.obj(1040, 280, "f")
    pinc = p.obj(1080, 280, "+ 1")
    pingt = p.obj(1040, 310, "t f b")
    p.connect(pingr, 0, pid)
    p.connect(pid, 0, pinc)
    p.connect(pinc, 0, pid, 1)
    p.connect(pid, 0, pingt)
    p.connect(pingt, 1, lat)
    ping = p.obj(1040, 340, "oscformat -f i ping")
    p.connect(pingt, 0, ping)
    p.connect(ping, 0, send)
    p.comment(1040, 220, "/ping the runtime, show the round trip", 24)
    # Pd -> runtime
    for k, (recv_name, fmt, addr) in enumerate([("gb_knob_out", "if", "knob"), ("gb_note_out", "ii", "note"),
                                                 ("gb_ack_out", "if", "ack")]):
        r = p.obj(300 + 200 * k, 740, f"r {recv_name}")
        f = p.obj(300 + 200 * k, 770, f"oscformat -f {fmt} {addr}")
        p.chain(r, f)
        p.connect(f, 0, send)
    # count and print what was dropped
    rb = p.obj(900, 600, "r gb_malformed")
    rbt = p.obj(900, 630, "t a b")
    p.connect(rb, 0, rbt)
    n = p.obj(1000, 660, "f")
    ninc = p.obj(1040, 660, "+ 1")
    p.connect(rbt, 1, n)
    p.connect(n, 0, ninc)
    p.connect(ninc, 0, n, 1)
    nt = p.obj(1000, 690, "t f f")
    p.connect(ninc, 0, nt)
    nv = p.obj(1000, 720, "v gb_malformed_count")
    ns = p.obj(1100, 720, "s gb_malformed_show")
    p.connect(nt, 1, nv)
    p.connect(nt, 0, ns)
    log = p.subpatch(900, 690, "log", drop_log())
    p.connect(rbt, 0, log)
    p.height = 880
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-out: filter, reverb, gain, soft limiter, DAC and recorder

# linear to 0.8, then a tanh knee whose ceiling is 0.99 (-0.09 dBFS): tanh reaches 1.0 in 32-bit floats,
# so the ceiling is kept below full scale rather than at it
LIMITER = "if(abs($v1) <= 0.8, $v1, (($v1 > 0)*2 - 1)*(0.8 + 0.19*tanh((abs($v1) - 0.8)/0.19)))"


def reverb() -> Patch:
    p = Patch(600, 400)
    l_in = p.obj(20, 20, "inlet~")
    r_in = p.obj(120, 20, "inlet~")
    send = p.obj(300, 20, "r gb_reverb")
    st = p.obj(300, 50, "t f f")
    p.connect(send, 0, st)
    sl = p.obj(300, 80, "pack f 30")
    line = p.obj(300, 110, "line~")
    p.connect(st, 1, sl)
    p.chain(sl, line)
    ml = p.obj(20, 140, "*~")
    mr = p.obj(120, 140, "*~")
    p.connect(l_in, 0, ml)
    p.connect(r_in, 0, mr)
    p.connect(line, 0, ml, 1)
    p.connect(line, 0, mr, 1)
    rev = p.obj(20, 180, "rev3~ 100 85 3000 20")
    p.connect(ml, 0, rev)
    p.connect(mr, 0, rev, 1)
    o1 = p.obj(20, 220, "outlet~")
    o2 = p.obj(120, 220, "outlet~")
    p.connect(rev, 0, o1)
    p.connect(rev, 1, o2)
    on = p.obj(400, 80, "moses 1e-06")
    p.connect(st, 0, on)
    later = p.obj(400, 110, "delay 8000")
    up = p.obj(480, 110, "t b b")
    now = p.msg(480, 140, "1")
    cancel = p.msg(540, 140, "stop")
    off = p.msg(400, 140, "0")
    p.connect(on, 0, later)
    p.connect(on, 1, up)
    p.connect(up, 0, now)
    p.connect(up, 1, cancel)
    p.chain(later, off)
    sw = p.obj(400, 200, "switch~")
    p.connect(off, 0, sw)
    p.connect(now, 0, sw)
    p.connect(cancel, 0, later)
    p.comment(300, 240, "rev3~ runs only while the send is up (and 8 s after, for the tail)", 36)
    return p


def filter_patch() -> Patch:
    """Subpatch: the resonant low-pass (extra/bob~, a Moog ladder) on both channels, switched on and off
    by [grainbox-out] through gb_filter_dsp."""
    p = Patch(700, 400)
    l_in = p.obj(20, 20, "inlet~")
    r_in = p.obj(300, 20, "inlet~")
    tone = p.obj(420, 20, "r gb_tone")
    tone_t = p.obj(420, 50, "t f b")
    tone_sr = p.obj(500, 50, "samplerate~")
    cut = p.obj(420, 80, "expr min(80*pow(2, $f1*8), 0.42*$f2)")
    p.comment(420, 105, "80 Hz .. 20 kHz, below Nyquist", 30)
    cl = p.obj(420, 130, "pack f 30")
    cline = p.obj(420, 160, "line~")
    p.chain(tone, tone_t)
    p.connect(tone_t, 1, tone_sr)
    p.connect(tone_sr, 0, cut, 1)
    p.connect(tone_t, 0, cut)
    p.chain(cut, cl, cline)
    res = p.obj(580, 20, "r gb_resonance")
    resm = p.obj(580, 50, "* 3.5")
    p.chain(res, resm)
    fl = p.obj(20, 200, "bob~")
    fr = p.obj(300, 200, "bob~")
    for f, src in ((fl, l_in), (fr, r_in)):
        p.connect(src, 0, f)
        p.connect(cline, 0, f, 1)
        p.connect(resm, 0, f, 2)
    p.connect(fl, 0, p.obj(20, 260, "outlet~"))
    p.connect(fr, 0, p.obj(300, 260, "outlet~"))
    sw = p.obj(420, 260, "switch~")
    p.connect(p.obj(420, 230, "r gb_filter_dsp"), 0, sw)
    return p


def out() -> Patch:
    p = Patch(900, 700)
    p.comment(20, 10, "grainbox-out: the voices' sum -> resonant low-pass (tone, resonance; extra/bob~) "
              "-> reverb send (extra/rev3~) -> gain -> soft limiter (linear to 0.8, then a tanh knee "
              "whose ceiling is 0.99) -> dac~ 1 2, and a 32-bit float WAV on /record.", 100)
    l_in = p.obj(20, 90, "inlet~")
    r_in = p.obj(300, 90, "inlet~")
    fsub = p.subpatch(20, 140, "filter", filter_patch())
    p.connect(l_in, 0, fsub, 0)
    p.connect(r_in, 0, fsub, 1)
    p.comment(20, 170, "the filter runs only while it does something (tone < 1 or resonance > 0): a "
              "10 ms crossfade between the dry sum and the filter's output switches it in and out, "
              "so an open filter costs nothing", 60)
    mixes = []
    for k, (src, x) in enumerate(((l_in, 20), (r_in, 300))):
        diff = p.obj(x, 240, "-~")
        scale = p.obj(x, 270, "*~")
        mix = p.obj(x, 300, "+~")
        p.connect(fsub, k, diff)
        p.connect(src, 0, diff, 1)
        p.connect(diff, 0, scale)
        p.connect(scale, 0, mix)
        p.connect(src, 0, mix, 1)
        mixes.append((scale, mix))
    tone = p.obj(560, 90, "r gb_tone")
    res = p.obj(680, 90, "r gb_resonance")
    active = p.obj(560, 120, "expr gb_tone < 0.999 || gb_resonance > 0.001")
    p.connect(tone, 0, active)
    p.connect(res, 0, active)
    changed = p.obj(560, 150, "change -1")
    onoff = p.obj(560, 180, "sel 1 0")
    p.chain(active, changed, onoff)
    on_t = p.obj(560, 210, "t b b")
    off_t = p.obj(680, 210, "t b b")
    p.connect(onoff, 0, on_t)
    p.connect(onoff, 1, off_t)
    later = p.obj(760, 240, "delay 20")
    cancel = p.msg(620, 240, "stop")
    dsp_on = p.msg(660, 270, "1")
    dsp_off = p.msg(760, 270, "0")
    dsp = p.obj(660, 300, "s gb_filter_dsp")
    fade_in = p.msg(560, 240, "1 10")
    fade_out = p.msg(680, 240, "0 10")
    fade = p.obj(560, 300, "line~")
    p.connect(on_t, 1, cancel)
    p.connect(cancel, 0, later)
    p.connect(on_t, 1, dsp_on)
    p.connect(dsp_on, 0, dsp)
    p.connect(on_t, 0, fade_in)
    p.connect(off_t, 1, fade_out)
    p.connect(off_t, 0, later)
    p.chain(later, dsp_off, dsp)
    p.connect(fade_in, 0, fade)
    p.connect(fade_out, 0, fade)
    for scale, _mix in mixes:
        p.connect(fade, 0, scale, 1)
    fl, fr = mixes[0][1], mixes[1][1]
    rv = p.subpatch(120, 360, "reverb", reverb())
    p.connect(fl, 0, rv)
    p.connect(fr, 0, rv, 1)
    gain = p.obj(560, 360, "r gb_gain")
    gl = p.obj(560, 390, "pack f 30")
    gline = p.obj(560, 420, "line~")
    p.chain(gain, gl, gline)
    ml = p.obj(20, 450, "*~")
    mr = p.obj(300, 450, "*~")
    p.connect(fl, 0, ml)
    p.connect(fr, 0, mr)
    p.connect(rv, 0, ml)
    p.connect(rv, 1, mr)
    p.connect(gline, 0, ml, 1)
    p.connect(gline, 0, mr, 1)
    liml = p.obj(20, 490, f"expr~ {LIMITER}")
    limr = p.obj(300, 520, f"expr~ {LIMITER}")
    p.connect(ml, 0, liml)
    p.connect(mr, 0, limr)
    dac = p.obj(20, 580, "dac~ 1 2")
    rec = p.obj(300, 620, "writesf~ 2")
    p.connect(liml, 0, dac)
    p.connect(limr, 0, dac, 1)
    p.connect(liml, 0, rec)
    p.connect(limr, 0, rec, 1)
    ol = p.obj(20, 650, "outlet~")
    orr = p.obj(120, 650, "outlet~")
    p.connect(liml, 0, ol)
    p.connect(limr, 0, orr)
    p.comment(180, 650, "<- the output, for meters", 20)
    rp = p.obj(560, 480, "r gb_record_path")
    sym = p.obj(560, 510, "symbol")
    p.connect(rp, 0, sym, 1)
    ron = p.obj(700, 480, "r gb_record_on")
    rsel = p.obj(700, 510, "sel 1")
    p.connect(ron, 0, rsel)
    p.connect(rsel, 0, sym)
    opn = p.msg(560, 550, "open -bytes 4 $1, start")
    stop = p.msg(700, 550, "stop")
    p.connect(rsel, 1, stop)
    p.connect(sym, 0, opn)
    p.connect(opn, 0, rec)
    p.connect(stop, 0, rec)
    pr = p.obj(560, 590, "print grainbox-record")
    p.connect(sym, 0, pr)
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-keys base: a two-octave keyboard of [bng]s (vanilla has no kslider)

WHITE = [0, 2, 4, 5, 7, 9, 11]
BLACK = {1: 0, 3: 1, 6: 3, 8: 4, 10: 5}  # black key -> white key index it sits after


def keys() -> Patch:
    p = Patch(700, 500)
    pos = []
    for octave in range(2):
        for i, pc in enumerate(WHITE):
            pos.append((octave * 12 + pc, 4 + (octave * 7 + i) * 20, 30, 18, "#ffffff"))
        for pc, after in BLACK.items():
            pos.append((octave * 12 + pc, 4 + (octave * 7 + after) * 20 + 11, 6, 16, "#303030"))
    pos.append((24, 4 + 14 * 20, 30, 18, "#ffffff"))
    gui = {}
    for note, x, y, size, color in pos:
        gui[note] = p.bang(x, y, size=size, color=color)
    off = p.bang(4 + 15 * 20 + 6, 30, size=18, color="#ffb0b0", label="off")
    p.lines[off] = p.lines[off].replace("off 22 9", "off 0 -8")
    p.graph_on_parent(340, 54, 0, 0)
    p.comment(20, 100, "grainbox-keys base: two octaves from MIDI note base (default 48). A click "
                       "plays a note (monophonic: the previous one is released) with the velocity in "
                       "gb_keyvel; 'off' releases it. Notes go to gb_note_in as pitch velocity, and "
                       "out of the outlet.", 70)
    base = p.obj(420, 190, "f $1")
    lb = p.obj(420, 160, "loadbang")
    bdef = p.obj(420, 220, "expr if($f1 > 0, $f1, 48)")
    p.chain(lb, base, bdef)
    add = p.obj(20, 330, "+")
    p.connect(bdef, 0, add, 1)
    for k, (note, obj) in enumerate(sorted(gui.items())):
        m = p.msg(20 + (k % 13) * 30, 200 + (k // 13) * 30, str(note))
        p.connect(obj, 0, m)
        p.connect(m, 0, add)
    t = p.obj(20, 360, "t f b")
    p.connect(add, 0, t)
    prev = p.obj(120, 400, "f -1")
    p.connect(t, 1, prev)
    rel = p.obj(120, 430, "moses 0")
    p.connect(prev, 0, rel)
    relp = p.msg(160, 460, "$1 0")
    p.connect(rel, 1, relp)
    st = p.obj(20, 400, "t f f")
    p.connect(t, 0, st)
    p.connect(st, 1, prev, 1)
    vel = p.obj(20, 430, "pack f f")
    p.connect(st, 0, vel)
    kv = p.obj(60, 460, "v gb_keyvel")
    pv = p.obj(20, 430, "t f b")
    p.connections.remove(f"#X connect {st} 0 {vel} 0;")
    p.lines[vel] = "#X obj 20 490 pack f f;"
    p.connect(st, 0, pv)
    p.connect(pv, 1, kv)
    p.connect(kv, 0, vel, 1)
    p.connect(pv, 0, vel)
    offm = p.obj(300, 400, "t b b")
    p.connect(off, 0, offm)
    p.connect(offm, 0, prev)
    neg = p.msg(300, 430, "-1")
    p.connect(offm, 1, neg)
    p.connections.remove(f"#X connect {offm} 1 {neg} 0;")
    # off: release the held note, then forget it
    p.connect(offm, 0, neg)
    p.connections.remove(f"#X connect {offm} 0 {neg} 0;")
    p.connect(offm, 1, prev)
    p.connections.remove(f"#X connect {offm} 0 {prev} 0;")
    p.connect(offm, 0, neg)
    p.connect(neg, 0, prev, 1)
    outl = p.obj(20, 520, "outlet")
    snd = p.obj(120, 520, "s gb_note_in")
    p.connect(vel, 0, outl)
    p.connect(vel, 0, snd)
    p.connect(relp, 0, outl)
    p.connect(relp, 0, snd)
    p.comment(200, 520, "-> pitch velocity", 20)
    p.height = 580
    return p


# ---------------------------------------------------------------------------------------------------
# grainbox-params: every parameter, the LFOs, and the engine's shared state


def params() -> Patch:
    p = Patch(1000, 700)
    p.comment(20, 10, "grainbox-params: one [grainbox-param] per synthesis parameter (the /param table "
              "of docs/osc.md), the two LFOs, and the state the engine shares: tables for voices and "
              "scales, the lists of parameter and LFO-target names, and the model's defaults until a "
              "/model arrives (22050 Hz, 1024 samples, 8 slots).", 110)
    y = 80
    for k, prm in enumerate(PARAMS):
        x = 20 + (k % 3) * 330
        p.obj(x, y + (k // 3) * 28, f"grainbox-param {prm.name} {prm.lo:g} {prm.hi:g} {prm.default:g} "
              f"{int(prm.log)} {int(prm.integer)}")
    y += (len(PARAMS) // 3 + 1) * 28 + 10
    p.obj(20, y, "grainbox-lfo 1")
    p.obj(160, y, "grainbox-lfo 2")
    y += 40
    names = " ; ".join(prm.name for prm in PARAMS)
    pn = p.obj(20, y, "text define -k gb_param_names")
    p.lines[pn] += "\n#A set " + names.replace(";", "\\;") + " \\;;"
    tn = p.obj(320, y, "text define -k gb_lfo_targets")
    p.lines[tn] += "\n#A set " + " \\; ".join(LFO_TARGETS) + " \\;;"
    y += 40
    p.comment(20, y, "LFO targets: " + ", ".join(f"{i} {n}" for i, n in enumerate(LFO_TARGETS)), 110)
    y += 50
    p.obj(20, y, f"table gb_vend {VOICES}")
    p.obj(180, y, f"table gb_vstart {VOICES}")
    p.obj(360, y, "table gb_scales 48")
    p.comment(520, y, "voices: busy until / started at (ms); scales: nearest degree of each pitch class",
              50)
    y += 40
    lb = p.obj(20, y, "loadbang")
    init = p.msg(20, y + 30, "; gb_scales 0 " + " ".join(map(str, scale_table())))
    p.connect(lb, 0, init)
    vals = [("gb_note", -1), ("gb_velocity", 1), ("gb_keysheld", 0), ("gb_modelsr", 22050),
            ("gb_grainsize", 1024), ("gb_nslots", 8), ("gb_keyvel", 100)]
    for k, (name, v) in enumerate(vals):
        m = p.msg(20 + 130 * k, y + 70, str(v))
        o = p.obj(20 + 130 * k, y + 100, f"v {name}")
        p.connect(lb, 0, m)
        p.connect(m, 0, o)
    p.height = y + 160
    return p


def notes() -> Patch:
    p = Patch(700, 400)
    p.comment(20, 10, "notes from the keys (gb_note_in) and MIDI ([notein], any channel) go to the "
              "runtime (/note) and set the grains' transposition (note - root) and amplitude "
              "(velocity/127); keysheld counts held keys for keygate", 80)
    nin = p.obj(20, 80, "notein")
    pk = p.obj(20, 110, "pack f f")
    p.connect(nin, 0, pk)
    p.connect(nin, 1, pk, 1)
    s = p.obj(20, 140, "s gb_note_in")
    p.connect(pk, 0, s)
    r = p.obj(250, 80, "r gb_note_in")
    t = p.obj(250, 110, "t l l")
    p.connect(r, 0, t)
    so = p.obj(350, 140, "s gb_note_out")
    p.connect(t, 1, so)
    e = p.obj(250, 170, "expr if($f2 > 0, $f1, gb_note); if($f2 > 0, $f2/127, gb_velocity); "
                        "max(0, gb_keysheld + if($f2 > 0, 1, -1))")
    p.connect(t, 0, e)
    for k, name in enumerate(["gb_note", "gb_velocity", "gb_keysheld"]):
        o = p.obj(250 + 130 * k, 210, f"v {name}")
        p.connect(e, k, o)
    return p


# ---------------------------------------------------------------------------------------------------
# main.pd


def widget(p: Patch, x: int, y: int, prm: Param) -> None:
    label = f"{prm.name}" + (f"_({prm.unit})" if prm.unit else "")
    send, recv = f"gb_{prm.name}_in", f"gb_{prm.name}_gui"
    if prm.gui == "slider":
        p.hslider(x, y + 12, prm.lo, prm.hi, prm.log, send, recv, label, width=150)
        p.floatatom(x + 160, y + 12, 6, receive=f"gb_{prm.name}_show")
    elif prm.gui == "toggle":
        p.toggle(x, y + 12, send, recv, prm.name)
    elif prm.gui == "number":
        p.numbox(x, y + 12, prm.lo, prm.hi, send, recv, label)
    elif prm.gui.startswith("radio:"):
        n = int(prm.gui.split(":")[1])
        p.hradio(x, y + 12, n, send, recv, prm.name)
        names = ["off chrom major minor penta", " ".join(LFO_SHAPES)][0 if n == 5 else 1]
        p.comment(x + 17 * n + 6, y + 8, names, 15 if n == 5 else 14)


SECTIONS = [
    ("SCHEDULER: when grains start", ["density", "async", "intermittency", "clocked", "clockdiv", "voices"]),
    ("GRAIN: what each grain is", ["duration", "shape", "reverse", "spread", "pan", "normalize"]),
    ("PITCH", ["transpose", "fine", "pitchjitter", "scale", "root", "keygate"]),
    ("OUTPUT", ["tone", "resonance", "reverb", "gain", "freeze"]),
    ("LFO 1", ["lfo1rate", "lfo1shape", "lfo1depth", "lfo1target"]),
    ("LFO 2", ["lfo2rate", "lfo2shape", "lfo2depth", "lfo2target"]),
]


def main_patch() -> Patch:
    p = Patch(1320, 860)
    byname = {prm.name: prm for prm in PARAMS}
    p.comment(20, 10, "GRAINBOX: a granular engine for grains decoded by a neural model. The runtime "
              "sends grains and parameters over OSC (docs/osc.md); everything here can also be played "
              "from this window. Headless: pd -nogui -noaudio -send 'gb_ports 9001 9000' main.pd "
              "(Pd listens on 127.0.0.1:9001, answers to :9000), or use it as an object [main "
              "pd_port runtime_port].", 170)
    col_w = 215
    for c, (title, names) in enumerate(SECTIONS):
        x = 20 + c * col_w
        p.canvas_rect(x - 6, 70, col_w - 8, 300, color="#eef2f6")
        p.comment(x, 74, title, 28)
        for k, name in enumerate(names):
            widget(p, x, 110 + k * 42, byname[name])
    # transport row
    y = 390
    p.canvas_rect(14, y - 6, 640, 110, color="#f4f0e8")
    p.comment(20, y, "TRIGGER AND RECORD", 30)
    p.bang(20, y + 30, send="gb_trigger", label="trigger_one_grain")
    p.msg(230, y + 24, "; gb_record_path grainbox-take.wav; gb_record_on 1")
    p.msg(230, y + 70, "; gb_record_on 0")
    p.comment(470, y + 24, "<- record the output to a 32-bit float WAV beside the patch (OSC /record "
              "does the same)", 24)
    p.comment(350, y + 74, "<- stop", 10)
    p.comment(20, y + 56, "also /trigger, and MIDI clock when clocked", 26)
    # knobs
    y = 510
    p.canvas_rect(14, y - 6, 330, 170, color="#e8f0e8")
    p.comment(20, y, "VIRTUAL KNOBS -> runtime (/knob i v)", 40)
    plumbing = Patch(420, 300)
    plumbing.comment(20, 10, "each knob's slider sends to gb_knob<i>; here it becomes /knob i v", 60)
    for i in range(8):
        p.vslider(26 + i * 38, y + 40, f"gb_knob{i}", "empty", f"k{i}", height=100)
        r = plumbing.obj(20, 50 + i * 28, f"r gb_knob{i}")
        m = plumbing.msg(140, 50 + i * 28, f"{i} $1")
        snd = plumbing.obj(220, 50 + i * 28, "s gb_knob_out")
        plumbing.chain(r, m, snd)
    p.subpatch(26, y + 150, "knobs-to-osc", plumbing)
    # keys
    p.canvas_rect(360, y - 6, 380, 170, color="#f0e8f0")
    p.comment(366, y, "KEYS -> transposition from root, velocity -> amplitude; also /note to the runtime",
              50)
    p.obj(366, y + 50, "grainbox-keys 48")
    p.numbox(366, y + 130, 1, 127, "empty", "empty", "velocity", digits=4)
    kvel = p.count - 1
    kv = p.obj(460, y + 130, "v gb_keyvel")
    p.connect(kvel, 0, kv)
    # link status
    p.canvas_rect(760, y - 6, 260, 170, color="#e8eef4")
    p.comment(766, y, "LINK (OSC)", 20)
    for k, (label, recv) in enumerate([("model_sr", "gb_sr_show"), ("grain", "gb_grain_show"),
                                       ("slots", "gb_slots_show"), ("dropped", "gb_malformed_show"),
                                       ("ping_ms", "gb_latency_show")]):
        p.floatatom(766, y + 30 + k * 26, 7, receive=recv)
        p.comment(836, y + 30 + k * 26, label, 16)
    p.bang(960, y + 134, send="gb_ping_runtime", label="ping")
    # engine
    x0 = 1040
    p.canvas_rect(x0 - 6, 384, 280, 330, color="#f6f6f6")
    p.comment(x0, 390, "ENGINE (open each to see inside)", 36)
    p.obj(x0, 420, "grainbox-params")
    p.obj(x0, 450, "grainbox-osc $1 $2")
    p.obj(x0, 480, "grainbox-slots")
    sched = p.obj(x0, 510, "grainbox-scheduler")
    voices = p.obj(x0, 540, f"clone -s 0 grainbox-voice {VOICES}")
    outp = p.obj(x0, 580, "grainbox-out")
    p.connect(sched, 0, voices)
    p.connect(voices, 0, outp)
    p.connect(voices, 1, outp, 1)
    nt = p.subpatch(x0 + 140, 420, "notes", notes())
    del nt
    meter_l = p.obj(x0, 620, "env~ 4096")
    meter_r = p.obj(x0 + 100, 620, "env~ 4096")
    p.connect(outp, 0, meter_l)
    p.connect(outp, 1, meter_r)
    ml = p.floatatom(x0, 650, 5)
    mr = p.floatatom(x0 + 100, 650, 5)
    p.connect(meter_l, 0, ml)
    p.connect(meter_r, 0, mr)
    p.comment(x0 + 160, 650, "dB out", 10)
    # the output again as main's outlets, so a patch that holds [main] can record or process it
    out_l = p.obj(x0, 685, "outlet~")
    out_r = p.obj(x0 + 100, 685, "outlet~")
    p.connect(outp, 0, out_l)
    p.connect(outp, 1, out_r)
    p.comment(x0 + 160, 685, "out (as [main])", 10)
    lb = p.obj(x0 + 190, 455, "loadbang")
    dsp = p.msg(x0 + 190, 485, "; pd dsp 1")
    p.connect(lb, 0, dsp)
    p.height = 750
    return p




# ---------------------------------------------------------------------------------------------------
# help patches, in the style of Pd's reference patches: what it is, a working example, inlets/outlets


def help_patch(name: str, summary: str, details: str) -> Patch:
    """The common top of every help patch: a title bar, a summary and what the abstraction does."""
    p = Patch(760, 560)
    p.canvas_rect(10, 10, 740, 36, color="#dce4ec")
    p.comment(20, 16, f"[{name}]", 40)
    p.comment(260, 16, summary, 70)
    p.comment(20, 60, details, 100)
    p.comment(20, 520, "part of Grainbox (pd/main.pd); docs/osc.md has the protocol. Generated by "
              "pd/make_patches.py: change it there.", 100)
    return p


def dsp_switch(p: Patch, x: int, y: int) -> None:
    p.msg(x, y, "; pd dsp 1")
    p.msg(x + 90, y, "; pd dsp 0")
    p.comment(x + 180, y, "<- audio on / off", 20)


def voice_help() -> Patch:
    p = help_patch("grainbox-voice", "one grain at a time, [clone]d 32 times in main.pd",
                   "Give it a grain as a list: table (slot*4 + ring entry) start end (in slot samples, "
                   "end < start plays backwards) duration (ms) 1/attack 1/release (envelope: 2 2 is "
                   "Hann) gain_left gain_right amp steal (1: fade out what it plays in 3 ms first). It "
                   "reads the table at the speed that covers start..end in the duration, looping the "
                   "slot, and switches its own DSP off when idle.")
    p.obj(20, 140, "grainbox-params")
    p.obj(180, 140, "grainbox-slots")
    p.msg(340, 140, "; gb_tab_0 sinesum 1024 1 0 0.3 0 0.2")
    p.comment(340, 170, "<- a test grain in slot 0: harmonics with guard points, as the slots store it", 40)
    m1 = p.msg(20, 210, "0 0 1024 300 2 2 0.7 0.7 0.5 0")
    m2 = p.msg(20, 240, "0 1023 0 300 2 2 0.7 0.7 0.5 0")
    m3 = p.msg(20, 270, "0 0 4096 500 10 1.05 1 0.2 0.5 0")
    p.comment(300, 210, "one cycle in 300 ms (a low tone), Hann", 40)
    p.comment(300, 240, "the same, backwards", 40)
    p.comment(300, 270, "4 loops in 500 ms, percussive, panned left", 40)
    v = p.obj(20, 320, "grainbox-voice")
    for m in (m1, m2, m3):
        p.connect(m, 0, v)
    g = p.obj(20, 360, "*~ 0.5")
    g2 = p.obj(120, 360, "*~ 0.5")
    dac = p.obj(20, 400, "dac~")
    p.connect(v, 0, g)
    p.connect(v, 1, g2)
    p.connect(g, 0, dac)
    p.connect(g2, 0, dac, 1)
    dsp_switch(p, 20, 450)
    return p


def param_help() -> Patch:
    p = help_patch("grainbox-param", "one synthesis parameter: clipped, rounded, modulated",
                   "Arguments: name lo hi default log(0/1) integer(0/1). Set the base value with "
                   "[s gb_<name>_in] (OSC /param does); non-finite values are ignored, others clipped. "
                   "The value in force (base + the LFOs' offsets) goes to [r gb_<name>] and [v gb_<name>].")
    p.obj(20, 140, "grainbox-param demo 0 10 5 0 1")
    n = p.floatatom(20, 190, 6)
    s = p.obj(20, 220, "s gb_demo_in")
    p.connect(n, 0, s)
    p.comment(90, 190, "<- set (try 3.7 or 99)", 30)
    r = p.obj(300, 190, "r gb_demo")
    o = p.floatatom(300, 220, 6)
    p.connect(r, 0, o)
    p.comment(370, 220, "<- in force: rounded, clipped to 0..10", 30)
    p.msg(20, 270, "; gb_demo_mod1 0.2")
    p.msg(200, 270, "; gb_demo_mod1 0")
    p.comment(20, 300, "an LFO's offset, in units of the range (0.2 = +2 here)", 60)
    return p


def lfo_help() -> Patch:
    p = help_patch("grainbox-lfo", "LFO n: sine, triangle, square or random, onto any parameter",
                   "Argument: 1 or 2. Reads lfo<n>rate, lfo<n>shape, lfo<n>depth and lfo<n>target from "
                   "[grainbox-params] every 10 ms and sends depth*value/2 (in units of the target's "
                   "range) to that parameter. The targets are listed in [grainbox-params].")
    p.obj(20, 140, "grainbox-params")
    pan = LFO_TARGETS.index("pan")
    p.msg(20, 180, f"; gb_lfo1target_in {pan}; gb_lfo1depth_in 1; gb_lfo1rate_in 1")
    p.comment(20, 240, f"<- LFO 1 sweeps pan (target {pan}) once a second; [grainbox-params] already "
              "holds both LFOs", 60)
    for k, shape in enumerate(["sine", "triangle", "square", "random"]):
        p.msg(20 + 110 * k, 290, f"; gb_lfo1shape_in {k}")
        p.comment(20 + 110 * k, 320, shape, 10)
    r = p.obj(20, 370, "r gb_pan")
    h = p.hslider(20, 410, 0, 1, False, "empty", "empty", "pan_in_force", width=200)
    p.connect(r, 0, h)
    p.msg(300, 370, "; gb_lfo1target_in 0")
    p.comment(300, 400, "<- off (target 0 = none)", 20)
    return p


def scheduler_help() -> Patch:
    p = help_patch("grainbox-scheduler", "when grains start and what each one is",
                   "Fires grains from the density clock (with asynchrony and intermittency), /trigger "
                   "(gb_trigger) and MIDI clock, reading every parameter at the grain's moment. Each "
                   "grain leaves as: voice table start end duration 1/attack 1/release gain_l gain_r "
                   "amp steal, for [clone grainbox-voice].")
    p.obj(20, 140, "grainbox-params")
    p.msg(200, 140, "; gb_density_in 2")
    p.msg(360, 140, "; gb_density_in 0.5")
    sch = p.obj(20, 200, "grainbox-scheduler")
    pr = p.obj(20, 240, "print grain")
    p.connect(sch, 0, pr)
    p.comment(20, 270, "<- open the Pd window to see the grains", 40)
    p.msg(200, 200, "; gb_clocked_in 1")
    p.bang(360, 200, send="gb_trigger", label="trigger")
    p.msg(460, 200, "; gb_clocked_in 0")
    return p


def slots_help() -> Patch:
    p = help_patch("grainbox-slots", "the grain tables: double-buffered writes, /ack, freeze",
                   "Holds 16 slots x 4 tables. A grain (gb_grain_in: slot then G samples) goes into the "
                   "slot's table that voices left longest ago and then becomes current, so a slot can "
                   "change under playing voices without a click. It answers gb_ack_out: slot checksum. "
                   "gb_model_in (sr grain latent slots) resizes every table.")
    p.obj(20, 150, "grainbox-params")
    p.obj(180, 150, "grainbox-slots")
    p.msg(20, 190, "; gb_model_in 22050 8 8 8")
    p.comment(240, 190, "<- a tiny model: 8-sample grains", 30)
    p.msg(20, 220, "; gb_grain_in 2 0 0.5 1 0.5 0 -0.5 -1 -0.5")
    p.comment(360, 220, "<- slot 2", 20)
    r = p.obj(20, 270, "r gb_ack_out")
    pr = p.obj(20, 300, "print ack")
    p.connect(r, 0, pr)
    p.comment(120, 300, "<- 2 0 (slot, sum of its samples)", 40)
    p.msg(20, 340, "; gb_freeze_in 1")
    p.msg(160, 340, "; gb_freeze_in 0")
    p.comment(300, 340, "freeze holds new grains back until it goes off", 40)
    p.msg(20, 380, "; gb_model_in 22050 1024 8 8")
    p.comment(260, 380, "<- back to the default size", 30)
    return p


def osc_help() -> Patch:
    p = help_patch("grainbox-osc", "the OSC link to the runtime (docs/osc.md)",
                   "Arguments: pd_port runtime_port (0 = 9001 and 9000), both on 127.0.0.1; "
                   "[s gb_ports] changes them. Checks every message (address, count, types, ranges, "
                   "finite floats), drops and prints the rest, and routes the good ones to the engine. "
                   "Sends /hello, /ack, /knob, /note, /ping and /pong. Packets can be injected as bytes "
                   "on gb_osc_bytes, as below.")
    p.obj(20, 150, "grainbox-osc 9101 9100")
    p.comment(220, 150, "<- a second link on other ports, so it does not clash with main.pd", 40)
    p.obj(520, 150, "grainbox-params")
    m1 = p.msg(20, 200, "set param, list density 40")
    m2 = p.msg(20, 230, "set param, list nothing 1")
    m3 = p.msg(20, 260, "set grain, list 1 2 3")
    fmt = p.obj(20, 300, "oscformat")
    p.comment(250, 230, "an unknown name and a short grain: both dropped (see the Pd window)", 40)
    s = p.obj(20, 330, "s gb_osc_bytes")
    for m in (m1, m2, m3):
        p.connect(m, 0, fmt)
    p.connect(fmt, 0, s)
    r = p.obj(20, 380, "r gb_density")
    n = p.floatatom(20, 410, 6)
    p.connect(r, 0, n)
    p.comment(90, 410, "<- density in force", 20)
    return p


def out_help() -> Patch:
    p = help_patch("grainbox-out", "filter, reverb, gain, soft limiter, dac~ and recorder",
                   "Two signal inlets (the voices' sum). Listens to gb_tone, gb_resonance, gb_reverb and "
                   "gb_gain, and to gb_record_path / gb_record_on (OSC /record). The soft limiter is "
                   "linear to 0.8 and then bends (tanh) towards a ceiling of 0.99, below full scale.")
    osc = p.obj(20, 150, "osc~ 110")
    amp = p.obj(20, 180, "*~ 3")
    p.connect(osc, 0, amp)
    p.comment(120, 180, "<- three times full scale", 30)
    o = p.obj(20, 230, "grainbox-out")
    p.connect(amp, 0, o)
    p.connect(amp, 0, o, 1)
    e = p.obj(20, 270, "env~ 4096")
    n = p.floatatom(20, 300, 6)
    p.connect(o, 0, e)
    p.connect(e, 0, n)
    p.comment(90, 300, "dB (100 = full scale): never above", 40)
    p.msg(300, 150, "; gb_gain 1")
    p.msg(300, 180, "; gb_gain 0.1")
    p.msg(300, 220, "; gb_tone 0.4; gb_resonance 0.7")
    p.msg(300, 250, "; gb_tone 1; gb_resonance 0")
    p.msg(300, 290, "; gb_reverb 0.5")
    p.msg(450, 290, "; gb_reverb 0")
    dsp_switch(p, 20, 360)
    return p


def keys_help() -> Patch:
    p = help_patch("grainbox-keys", "two octaves of keys (vanilla's answer to a kslider)",
                   "Argument: the MIDI note of the lowest key (default 48). A click plays that note "
                   "with velocity gb_keyvel (monophonic: the last note is released first); 'off' "
                   "releases it. Notes leave the outlet and go to gb_note_in as pitch velocity.")
    k = p.obj(20, 150, "grainbox-keys 60")
    pr = p.obj(20, 230, "print note")
    p.connect(k, 0, pr)
    return p


def params_help() -> Patch:
    p = help_patch("grainbox-params", "every synthesis parameter, the LFOs and the shared state",
                   "One [grainbox-param] per /param name (docs/osc.md lists them with ranges), the two "
                   "[grainbox-lfo]s, the voice and scale tables and the lists of names that "
                   "[grainbox-osc] and the LFOs look up. main.pd holds one; so do these help patches.")
    p.obj(20, 150, "grainbox-params")
    p.comment(20, 190, "parameters: " + ", ".join(f"{q.name} {q.lo:g}..{q.hi:g}" for q in PARAMS), 100)
    return p


HELP = {"grainbox-voice": voice_help, "grainbox-param": param_help, "grainbox-lfo": lfo_help,
        "grainbox-scheduler": scheduler_help, "grainbox-slots": slots_help, "grainbox-osc": osc_help,
        "grainbox-out": out_help, "grainbox-keys": keys_help, "grainbox-params": params_help}


# ---------------------------------------------------------------------------------------------------
# writing the files

def abstractions() -> dict[str, Patch]:
    """Every file the generator writes, by name (without .pd)."""
    return {
        "main": main_patch(),
        "grainbox-voice": voice(),
        "grainbox-param": param(),
        "grainbox-lfo": lfo(),
        "grainbox-scheduler": scheduler(),
        "grainbox-slots": slots(),
        "grainbox-osc": osc(),
        "grainbox-out": out(),
        "grainbox-keys": keys(),
        "grainbox-params": params(),
        **{f"{name}-help": make() for name, make in HELP.items()},
    }


def write_all(folder: Path = HERE) -> list[Path]:
    """Write every patch into folder; returns the paths written."""
    written = []
    for name, patch in abstractions().items():
        path = folder / f"{name}.pd"
        path.write_text(patch.render())
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path)
