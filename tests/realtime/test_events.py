"""The event decoder on hand-made step streams at 10 steps/s (defaults: enter 0.5, exit 0.3,
min_enter 0.2 s, min_duration 0.4 s, merge gap 0.4 s)."""
from __future__ import annotations


import numpy as np
import pytest

from mgr.realtime.events import (BACKGROUND_NAME, NO_GESTURE, EventConfig, EventDecoder, EventView, GestureEvent,
                                 background_index_of, decode_events)

NAMES = ["Scratching head", "Folding arms", "Rubbing eyes", BACKGROUND_NAME]
A, B, C, BG = range(4)
# the rules at fixed, round settings (the shipped defaults are tuned and may move)
CFG = EventConfig(enter=0.5, exit=0.3, min_enter_s=0.2, min_duration_s=0.4, merge_gap_s=0.4)


def p(**by_class) -> np.ndarray:
    """A probability vector from e.g. p(A=0.9): unnamed classes share the rest evenly."""
    v = np.zeros(len(NAMES))
    named = {"A": A, "B": B, "C": C, "BG": BG}
    for k, value in by_class.items():
        v[named[k]] = value
    rest = [i for i in range(len(NAMES)) if v[i] == 0]
    if rest:
        v[rest] = max(0.0, 1.0 - v.sum()) / len(rest)
    return v


def steps(*parts, dt=0.1):
    """(t, frame, probs) steps from (count, probs-or-None) parts, on a dt grid from t = 0."""
    out = []
    for count, probs in parts:
        for _ in range(count):
            out.append((round(len(out) * dt, 6), len(out), probs))
    return out


def decode(stream, cfg=CFG, background=BG, names=NAMES):
    return decode_events(stream, cfg, names, background)


def span(e: GestureEvent):
    return e.index, round(e.start, 6), round(e.end, 6)


QUIET = p(BG=0.9)


def test_event_opens_only_after_min_enter_s_and_starts_at_the_candidates_first_step():
    dec = EventDecoder(CFG, NAMES, BG)
    stream = steps((2, QUIET), (6, p(A=0.9)), (8, QUIET))       # A on steps 2..7 (0.2..0.7 s)
    states, emitted_at = [], {}
    for t, f, probs in stream:
        states.append(dec.state)
        for e in dec.update(t, f, probs):
            emitted_at[f] = e
    # candidate from step 2; held 0.2 s at step 4, so the state changes after step 4's update
    assert states[:6] == [NO_GESTURE] * 5 + ["Scratching head"]
    assert states[9] == NO_GESTURE                                 # closed at step 8 (A fell below exit)
    # the event waits merge_gap_s after its end (0.7 s): emitted by the first step past 1.1 s
    assert list(emitted_at) == [12]
    e = emitted_at[12]
    assert span(e) == (A, 0.2, 0.7) and (e.start_frame, e.end_frame) == (2, 7)
    assert e.confidence == pytest.approx(0.9) and e.peak == pytest.approx(0.9) and e.steps == 6
    assert not e.truncated and dec.finish() == []


def test_a_blip_shorter_than_min_enter_s_opens_nothing():
    assert decode(steps((3, QUIET), (2, p(A=0.95)), (10, QUIET))) == []      # held 0.1 s < 0.2 s
    # a candidate must be the argmax >= enter on every step: one step below enter restarts it
    broken = steps((3, QUIET), (2, p(A=0.9)), (1, p(A=0.45)), (2, p(A=0.9)), (10, QUIET))
    assert decode(broken) == []


def test_hysteresis_dips_between_exit_and_enter_do_not_end_an_event():
    stream = steps((3, p(A=0.9)), (3, p(A=0.4, B=0.35)), (2, p(A=0.8)), (5, p(A=0.1)))
    (e,) = decode(stream)
    assert span(e) == (A, 0.0, 0.7) and e.steps == 8
    assert e.confidence == pytest.approx((3 * 0.9 + 3 * 0.4 + 2 * 0.8) / 8) and e.peak == pytest.approx(0.9)
    # the same dip below exit ends it at 0.2 s (dropped: 0.2 s < 0.4 s); the rest is a 0.1 s blip
    assert decode(steps((3, p(A=0.9)), (3, p(A=0.25)), (2, p(A=0.8)), (5, p(A=0.1)))) == []


def test_events_shorter_than_min_duration_are_dropped():
    assert decode(steps((4, p(A=0.9)), (10, QUIET))) == []                      # 0.0..0.3 s: 0.3 s
    (e,) = decode(steps((5, p(A=0.9)), (10, QUIET)))                            # 0.0..0.4 s: kept
    assert span(e) == (A, 0.0, 0.4)
    cfg = EventConfig(min_duration_s=0.0)
    (e,) = decode(steps((4, p(A=0.9)), (10, QUIET)), cfg)
    assert span(e) == (A, 0.0, 0.3)


def test_a_short_gap_merges_with_a_steps_weighted_mean():
    # A 0.0..0.5 at 0.8 (6 steps), gap 0.6..0.8, A 0.9..1.2 at 0.6 (4 steps): start gap 0.4 s
    (e,) = decode(steps((6, p(A=0.8)), (3, QUIET), (4, p(A=0.6)), (10, QUIET)))
    assert span(e) == (A, 0.0, 1.2) and e.steps == 10 and e.end_frame == 12
    assert e.confidence == pytest.approx((6 * 0.8 + 4 * 0.6) / 10)       # 0.72, not the mean of means 0.7
    assert e.peak == pytest.approx(0.8)
    # one step more of gap (0.5 s) keeps them apart
    two = decode(steps((6, p(A=0.8)), (4, QUIET), (5, p(A=0.6)), (10, QUIET)))
    assert [span(e) for e in two] == [(A, 0.0, 0.5), (A, 1.0, 1.4)]


def test_a_same_class_candidate_that_began_within_the_gap_still_merges():
    # second A starts at 0.9 (gap 0.4 s) but is only confirmed at 1.1 s, after end + gap = 0.9 s
    dec = EventDecoder(CFG, NAMES, BG)
    out = []
    for t, f, probs in steps((6, p(A=0.8)), (3, QUIET), (6, p(A=0.8)), (10, QUIET)):
        out += dec.update(t, f, probs)
    assert [span(e) for e in out] == [(A, 0.0, 1.4)]


def test_no_merge_across_a_person_lost_step():
    dec = EventDecoder(CFG, NAMES, BG)
    stream = steps((6, p(A=0.8)), (1, QUIET), (1, None), (1, QUIET), (6, p(A=0.8)), (10, QUIET))
    got = {f: dec.update(t, f, probs) for t, f, probs in stream}
    assert [span(e) for e in got[7]] == [(A, 0.0, 0.5)]      # the None step emits the closed event at once
    later = [e for f in range(8, len(stream)) for e in got[f]] + dec.finish()
    assert [span(e) for e in later] == [(A, 0.9, 1.4)]       # a 0.4 s gap, yet no merge


def test_person_lost_closes_an_open_event_at_its_last_step():
    dec = EventDecoder(CFG, NAMES, BG)
    for t, f, probs in steps((6, p(A=0.9))):
        assert dec.update(t, f, probs) == []
    assert dec.state == "Scratching head"
    (e,) = dec.update(0.6, 6, None)
    assert span(e) == (A, 0.0, 0.5) and e.end_frame == 5 and not e.truncated
    assert dec.state == NO_GESTURE and dec.finish() == []


def test_run_ending_mid_event_closes_it_truncated_at_its_last_step():
    dec = EventDecoder(CFG, NAMES, BG)
    for t, f, probs in steps((2, QUIET), (7, p(A=0.7))):
        dec.update(t, f, probs)
    (e,) = dec.finish()
    assert span(e) == (A, 0.2, 0.8) and e.truncated and e.end_frame == 8
    assert e.to_record()["truncated"] is True and dec.state == NO_GESTURE


def test_a_confirmed_other_class_switches_the_event():
    # A 0.0..0.5; from 0.6 B leads with 0.6 while A stays above exit (0.35), so only B's confirmation ends A
    stream = steps((6, p(A=0.9)), (7, p(A=0.35, B=0.6)), (10, QUIET))
    dec = EventDecoder(CFG, NAMES, BG)
    states, out = [], []
    for t, f, probs in stream:
        out += [(f, e) for e in dec.update(t, f, probs)]
        states.append(dec.state)
    # B is the candidate from step 6 and confirmed at step 8; A ends at step 5 (before B's first step)
    assert states[7] == "Scratching head" and states[8] == "Folding arms"
    (f_a, a), (_, b) = out
    assert f_a == 8                                              # emitted when the other class opened
    assert span(a) == (A, 0.0, 0.5) and a.confidence == pytest.approx(0.9) and a.steps == 6
    assert span(b) == (B, 0.6, 1.2) and b.confidence == pytest.approx(0.6)


def test_a_candidate_that_overlapped_the_previous_event_restarts_after_its_end():
    # A 0.0..0.6 (at 0.6 B is already the argmax >= enter), A falls below exit at 0.7
    stream = steps((6, p(A=0.9)), (1, p(A=0.4, B=0.55)), (7, p(A=0.2, B=0.6)), (10, QUIET))
    events = decode(stream)
    assert [span(e) for e in events] == [(A, 0.0, 0.6), (B, 0.7, 1.3)]


def test_background_argmax_holds_no_event_but_is_a_class_without_background_index():
    assert decode(steps((15, p(BG=0.95)))) == []
    assert [span(e) for e in decode(steps((15, p(BG=0.95))), background=None)] == [(BG, 0.0, 1.4)]
    # a confirmed background ends an open gesture even while the gesture stays above exit
    stream = steps((6, p(A=0.9)), (8, p(A=0.35, BG=0.6)), (6, p(A=0.9)), (10, QUIET))
    assert [span(e) for e in decode(stream)] == [(A, 0.0, 0.5), (A, 1.4, 1.9)]
    # without a background class the thresholds alone decide: the same stream, read as classes
    # (the quiet tail, "no gesture" at 0.9, is then an event too, open when the run ends)
    assert [span(e) for e in decode(stream, background=None)] == [(A, 0.0, 0.5), (BG, 0.6, 1.3), (A, 1.4, 1.9),
                                                                  (BG, 2.0, 2.9)]


def test_background_index_of_finds_the_background_class():
    assert background_index_of(NAMES) == BG and background_index_of(NAMES[:3]) is None


def test_view_shows_the_open_event_and_recent_ones_within_the_horizon():
    dec = EventDecoder(CFG, NAMES, BG, history_s=60.0)
    assert dec.view() == EventView(0.0, None, (), 30.0)
    stream = steps((6, p(B=0.9)), (250, QUIET), (6, p(A=0.9)), (3, p(A=0.7)))   # B 0.0..0.5, A from 25.6
    for t, f, probs in stream:
        dec.update(t, f, probs)
    v = dec.view(30.0)
    assert v.now == pytest.approx(26.4) and v.current == ("Scratching head", A, pytest.approx(25.6))
    assert v.recent == ((pytest.approx(0.0), pytest.approx(0.5), B, "Folding arms"),
                        (pytest.approx(25.6), pytest.approx(26.4), A, "Scratching head"))   # open: end = now
    assert [r[2] for r in dec.view(10.0).recent] == [A]                  # B ended 25.9 s before now
    for t, f, probs in steps((3, p(A=0.1))):                               # A closes, pending a merge
        dec.update(26.5 + t, 265 + f, probs)
    v = dec.view(10.0)
    assert v.current is None and [(r[2], round(r[0], 6), round(r[1], 6)) for r in v.recent] == [(A, 25.6, 26.4)]
    with pytest.raises(ValueError, match="history_s"):
        dec.view(61.0)


def test_to_record_has_exactly_the_documented_keys_and_rounding():
    e = GestureEvent("Folding arms", 1, 1.234567, 2.5, 0.6666666, 0.9123456, 12, 25, steps=14)
    assert e.to_record() == {"event": "gesture", "class": "Folding arms", "index": 1, "start": 1.2346,
                             "end": 2.5, "confidence": 0.66667, "peak": 0.91235, "start_frame": 12,
                             "end_frame": 25}
    assert "truncated" in GestureEvent("x", 0, 0, 1, 0.5, 0.5, 0, 1, truncated=True).to_record()


@pytest.mark.parametrize("kwargs, field", [({"exit": 0.6}, "exit"), ({"exit": 0.0}, "exit"),
                                            ({"enter": 1.5}, "enter"), ({"min_enter_s": -0.1}, "min_enter_s"),
                                            ({"min_duration_s": float("inf")}, "min_duration_s"),
                                            ({"merge_gap_s": float("nan")}, "merge_gap_s")])
def test_event_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"EventConfig.{field}"):
        EventConfig(**kwargs)


def test_decoder_rejects_bad_inputs():
    with pytest.raises(ValueError, match="background_index"):
        EventDecoder(CFG, NAMES, 4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        EventDecoder(CFG, NAMES, BG).update(0.0, 0, np.zeros(33))


def test_reset_forgets_everything():
    stream = steps((6, p(A=0.9)), (3, QUIET), (6, p(B=0.9)))
    dec = EventDecoder(CFG, NAMES, BG)
    first = [e for t, f, probs in stream for e in dec.update(t, f, probs)]
    assert dec.state == "Folding arms" and dec.view().recent
    dec.reset()
    assert dec.state == NO_GESTURE and dec.view() == EventView(0.0, None, (), 30.0) and dec.finish() == []
    again = [e for t, f, probs in stream for e in dec.update(t, f, probs)] + dec.finish()
    assert again == decode(stream) and again[:len(first)] == first


def test_events_are_ordered_and_never_overlap_on_a_noisy_stream():
    rng = np.random.default_rng(0)
    logits = np.repeat(rng.normal(0, 2.5, (60, 4)), 5, axis=0) + rng.normal(0, 0.7, (300, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    stream = [(i * 0.1, i, None if i % 97 == 0 else probs[i]) for i in range(300)]
    for background in (BG, None):
        events = decode(stream, EventConfig(min_duration_s=0.2), background=background)
        assert len(events) >= 5
        assert all(e.start <= e.end and 0 < e.confidence <= e.peak + 1e-12 <= 1 + 1e-12 for e in events)
        assert all(a.end < b.start for a, b in zip(events, events[1:]))
        assert background is None or all(e.index != BG for e in events)


def test_a_clock_that_steps_back_cannot_reorder_events():
    stream = steps((6, p(A=0.9)), (3, QUIET), (6, p(B=0.9)), (10, QUIET))
    stream[8] = (0.1, 8, QUIET)                                   # a late timestamp
    events = decode(stream)
    assert [e.index for e in events] == [A, B] and events[0].end <= events[1].start


def test_detected_is_the_stream_time_of_the_opening_step_and_a_merge_keeps_the_first():
    # evidence placed 0.8 s before each step ran (a 1.6 s window's centre), as the live loop does
    lag = 0.8
    stream = [(t - lag, f, probs, t) for t, f, probs in
              steps((5, QUIET), (6, p(A=0.9)), (2, QUIET), (6, p(A=0.9)), (10, QUIET))]
    events = decode(stream)
    assert len(events) == 1 and events[0].index == A                       # 0.2 s gap < merge_gap_s: one event
    e = events[0]
    assert e.start == pytest.approx(0.5 - lag) and e.end == pytest.approx(1.8 - lag)
    assert e.detected == pytest.approx(0.5 + 0.2)           # the step that held A for min_enter_s, unshifted
    assert e.to_record()["detected"] == pytest.approx(0.7)
    # without ``now`` the evidence time is the stream time
    assert decode(steps((5, QUIET), (6, p(A=0.9)), (10, QUIET)))[0].detected == pytest.approx(0.7)
