//! A linearizability checker for histories of registers (Wing & Gong's search with Lowe's
//! memoisation, as porcupine does it): each key is an independent register (P-compositionality),
//! checked on its own. An operation is a write of a value or a read that returned a value; it was
//! invoked at one time and completed at another — or never (indeterminate: the client does not
//! know whether it took effect; it may be linearized anywhere after its invocation, or not at all,
//! which for a write is the same as linearizing it after everything else). Refused operations are
//! not part of a history: they did not happen.
//!
//! On failure the checker names the operations it could not order: the deepest partial
//! linearization it reached and the operations concurrent with the one it could not place.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// What a client did to a register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(String),
    /// A read and the value it returned (`None`: the register had no value yet).
    Read(Option<String>),
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub op: Op,
    /// Nanoseconds since the history began.
    pub invoked_ns: u64,
    /// `None`: indeterminate (timed out, connection lost): it may or may not have taken effect.
    pub completed_ns: Option<u64>,
    /// Free text for reports (the node it went through, say).
    pub note: String,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.op {
            Op::Write(v) => format!("write {v:?}"),
            Op::Read(v) => format!("read -> {v:?}"),
        };
        let done = match self.completed_ns {
            Some(c) => format!("completed +{:.3} s", c as f64 / 1e9),
            None => "indeterminate".to_owned(),
        };
        write!(
            f,
            "client {} {} key {:?} {what}: invoked +{:.3} s, {done}",
            self.client,
            self.note,
            self.key,
            self.invoked_ns as f64 / 1e9
        )
    }
}

/// Why a history is not linearizable: one key's operations that cannot be ordered.
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    /// The longest sequence of operations the search could order, in that order.
    pub ordered: Vec<Operation>,
    /// The operations around the first one that could not be placed after `ordered`.
    pub window: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {:?} is not linearizable", self.key)?;
        writeln!(f, "last operations of the longest order found:")?;
        for o in self.ordered.iter().rev().take(5).rev() {
            writeln!(f, "  {o}")?;
        }
        writeln!(f, "operations that cannot be ordered after it:")?;
        for o in &self.window {
            writeln!(f, "  {o}")?;
        }
        Ok(())
    }
}

/// Checks every key's register history; `initial` is every register's value before the history.
///
/// Values written must be unique per key (they identify the write a read saw). Indeterminate
/// writes are first bounded, which keeps the search small without changing the verdict: one that
/// no read saw is dropped (placing it after everything else is always possible and changes no
/// read), and one that was seen must have taken effect before the earliest read that saw it
/// completed, so that is its completion.
pub fn check(history: &[Operation], initial: Option<&str>) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for o in history {
        by_key.entry(o.key.as_str()).or_default().push(o.clone());
    }
    for (key, ops) in by_key {
        let bounded = bound_indeterminate(ops);
        let refs: Vec<&Operation> = bounded.iter().collect();
        check_register(key, &refs, initial.map(str::to_owned))?;
    }
    Ok(())
}

fn bound_indeterminate(ops: Vec<Operation>) -> Vec<Operation> {
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    for o in &ops {
        if let (Op::Read(Some(v)), Some(done)) = (&o.op, o.completed_ns) {
            let e = first_seen.entry(v.clone()).or_insert(done);
            *e = (*e).min(done);
        }
    }
    ops.into_iter()
        .filter_map(|mut o| match (&o.op, o.completed_ns) {
            (Op::Write(v), None) => {
                let seen = first_seen.get(v).copied()?;
                o.completed_ns = Some(seen.max(o.invoked_ns));
                Some(o)
            }
            _ => Some(o),
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Wing–Gong–Lowe search over one register's operations.
fn check_register(key: &str, ops: &[&Operation], initial: Option<String>) -> Result<(), Violation> {
    // Events in time order; at equal times calls come before returns (they overlap).
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoked_ns, 0, Event { op: i, is_call: true }));
        events.push((o.completed_ns.unwrap_or(u64::MAX), 1, Event { op: i, is_call: false }));
    }
    events.sort_by_key(|(t, kind, e)| (*t, *kind, e.op));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    let n = events.len();
    if n == 0 {
        return Ok(());
    }
    // A doubly-linked list over the events; index n is the head sentinel, usize::MAX the end.
    let head = n;
    let mut next = vec![usize::MAX; n + 1];
    let mut prev = vec![head; n + 1];
    next[head] = 0;
    for i in 0..n {
        prev[i] = if i == 0 { head } else { i - 1 };
        next[i] = if i + 1 == n { usize::MAX } else { i + 1 };
    }
    let mut return_of = vec![0usize; ops.len()];
    for (i, e) in events.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = i;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != usize::MAX {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != usize::MAX {
            prev[nx] = i;
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state = initial;
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // (call event index, state before it)
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut stuck_at = 0usize;
    let mut cursor = next[head];
    while next[head] != usize::MAX {
        if cursor == usize::MAX {
            // Should not happen: a list that still holds events always holds a return.
            break;
        }
        let e = events[cursor];
        if e.is_call {
            let o = ops[e.op];
            let after = match &o.op {
                Op::Write(v) => Some(Some(v.clone())),
                Op::Read(v) => (*v == state).then(|| state.clone()),
            };
            if let Some(new_state) = after {
                let mut bits = linearized.clone();
                bits[e.op / 64] |= 1 << (e.op % 64);
                if seen.insert((bits.clone(), new_state.clone())) {
                    stack.push((cursor, state.clone()));
                    linearized = bits;
                    state = new_state;
                    unlink(&mut next, &mut prev, cursor);
                    unlink(&mut next, &mut prev, return_of[e.op]);
                    if stack.len() > best.len() {
                        best = stack.iter().map(|(c, _)| events[*c].op).collect();
                        stuck_at = next[head];
                    }
                    cursor = next[head];
                    continue;
                }
            }
            cursor = next[cursor];
        } else {
            // A return before its call was placed: undo the last choice and try the next one.
            let Some((call, before)) = stack.pop() else {
                let stuck_op = if stuck_at == usize::MAX {
                    e.op
                } else {
                    events[stuck_at].op
                };
                return Err(violation(key, ops, &best, stuck_op));
            };
            let op = events[call].op;
            relink(&mut next, &mut prev, return_of[op]);
            relink(&mut next, &mut prev, call);
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            cursor = next[call];
        }
    }
    Ok(())
}

fn violation(key: &str, ops: &[&Operation], best: &[usize], stuck: usize) -> Violation {
    let placed: HashSet<usize> = best.iter().copied().collect();
    let s = ops[stuck];
    let (from, to) = (s.invoked_ns, s.completed_ns.unwrap_or(u64::MAX));
    // The operations not yet ordered that overlap the first one that could not be placed.
    let mut window: Vec<Operation> = ops
        .iter()
        .enumerate()
        .filter(|(i, o)| !placed.contains(i) && o.invoked_ns <= to && o.completed_ns.unwrap_or(u64::MAX) >= from)
        .map(|(_, o)| (*o).clone())
        .collect();
    window.sort_by_key(|o| o.invoked_ns);
    Violation {
        key: key.to_owned(),
        ordered: best.iter().map(|i| ops[*i].clone()).collect(),
        window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: usize, v: &str, t0: u64, t1: Option<u64>) -> Operation {
        Operation {
            client,
            key: "k".into(),
            op: Op::Write(v.into()),
            invoked_ns: t0,
            completed_ns: t1,
            note: String::new(),
        }
    }

    fn r(client: usize, v: Option<&str>, t0: u64, t1: u64) -> Operation {
        Operation {
            client,
            key: "k".into(),
            op: Op::Read(v.map(str::to_owned)),
            invoked_ns: t0,
            completed_ns: Some(t1),
            note: String::new(),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            w(1, "a", 0, Some(10)),
            r(2, Some("a"), 11, 20),
            w(1, "b", 21, Some(30)),
            r(2, Some("b"), 31, 40),
        ];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn concurrent_writes_may_be_read_in_either_order() {
        let h = vec![w(1, "a", 0, Some(10)), w(2, "b", 5, Some(15)), r(3, Some("a"), 16, 20)];
        assert!(check(&h, None).is_ok());
        let h = vec![w(1, "a", 0, Some(10)), w(2, "b", 5, Some(15)), r(3, Some("b"), 16, 20)];
        assert!(check(&h, None).is_ok());
    }

    #[test]
    fn the_issues_stale_read_is_found() {
        // Issue 14's history: c1 writes, then c5 writes (acknowledged), then a read returns c1's.
        let h = vec![
            w(1, "c1-550", 26_346, Some(26_351)),
            w(5, "c5-532", 26_365, Some(26_371)),
            r(3, Some("c1-550"), 27_780, 27_790),
        ];
        let v = check(&h, None).expect_err("stale read");
        assert_eq!(v.key, "k");
        assert!(v.window.iter().any(|o| o.op == Op::Read(Some("c1-550".into()))), "{v}");
    }

    #[test]
    fn a_read_of_a_never_written_value_is_a_violation() {
        let h = vec![w(1, "a", 0, Some(10)), r(2, Some("zzz"), 11, 20)];
        assert!(check(&h, None).is_err());
        assert!(check(&[r(2, None, 0, 1)], None).is_ok());
        assert!(check(&[r(2, None, 0, 1)], Some("init")).is_err());
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_take_effect() {
        // Never acknowledged, yet read: it took effect.
        let h = vec![
            w(1, "a", 0, Some(10)),
            w(2, "lost?", 12, None),
            r(3, Some("lost?"), 20, 30),
        ];
        assert!(check(&h, None).is_ok());
        // Never acknowledged, never read: it did not.
        let h = vec![w(1, "a", 0, Some(10)), w(2, "lost?", 12, None), r(3, Some("a"), 20, 30)];
        assert!(check(&h, None).is_ok());
        // But once it is read, a later read may not go back to before it.
        let h = vec![
            w(1, "a", 0, Some(10)),
            w(2, "x", 12, None),
            r(3, Some("x"), 20, 30),
            r(3, Some("a"), 31, 40),
        ];
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn keys_are_independent_registers() {
        let mut other = w(1, "b", 0, Some(10));
        other.key = "other".into();
        let h = vec![w(1, "a", 0, Some(10)), other, r(2, Some("a"), 11, 20)];
        assert!(check(&h, None).is_ok());
    }

    /// Generated histories: a true register under random concurrency is always linearizable,
    /// and corrupting one read into a value from the future makes it not.
    #[test]
    fn generated_histories() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut corrupted = 0;
        for round in 0..200 {
            // Simulate: each op takes effect at a point inside its [invoke, complete] interval.
            let mut points: Vec<(u64, usize, bool)> = Vec::new(); // (effect time, client, is_write)
            let mut ops = Vec::new();
            for c in 0..4 {
                let mut t = rnd(5);
                for _ in 0..6 {
                    let start = t;
                    let effect = start + 1 + rnd(10);
                    let end = effect + 1 + rnd(10);
                    points.push((effect, c, rnd(2) == 0));
                    ops.push((start, end, effect));
                    t = end + 1 + rnd(3);
                }
            }
            let mut order: Vec<usize> = (0..points.len()).collect();
            order.sort_by_key(|i| (points[*i].0, *i));
            let mut value: Option<String> = None;
            let mut history = Vec::new();
            let mut last_written = Vec::new();
            for i in order {
                let (_, client, is_write) = points[i];
                let (start, end, _) = ops[i];
                if is_write {
                    let v = format!("r{round}-{i}");
                    value = Some(v.clone());
                    last_written.push(v.clone());
                    history.push(w(client, &v, start, Some(end)));
                } else {
                    history.push(r(client, value.as_deref(), start, end));
                }
            }
            assert!(
                check(&history, None).is_ok(),
                "round {round}: a real register's history"
            );
            // Corrupt: a read that completes before a write was even invoked returns that write.
            let first_read = history.iter().position(|o| matches!(o.op, Op::Read(_)));
            let late_write = history
                .iter()
                .filter_map(|o| match (&o.op, first_read) {
                    (Op::Write(v), Some(fr)) if o.invoked_ns > history[fr].completed_ns.unwrap_or(0) => Some(v.clone()),
                    _ => None,
                })
                .next();
            if let (Some(fr), Some(v)) = (first_read, late_write) {
                history[fr].op = Op::Read(Some(v));
                assert!(check(&history, None).is_err(), "round {round}: a read from the future");
                corrupted += 1;
            }
        }
        assert!(corrupted > 50, "only {corrupted} corrupted histories were checked");
    }
}
