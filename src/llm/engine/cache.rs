//! Reuse of KV states between model calls: a bounded pool of states, least recently used evicted first.
//!
//! A call checks out the state whose cached tokens share the longest prefix with its prompt; only the rest of
//! the prompt is computed. When that state also holds a longer sequence someone may come back to (the system
//! and tools prefix that every conversation starts with, or another conversation), the shared prefix is copied
//! and the original stays in the pool. Checked back in, the pool drops its least recently used states until the
//! idle states' KV bytes are within the budget.

use super::{Config, State};

/// The default budget of idle states' KV bytes (`KEEL_KV_CACHE_MB` overrides it).
pub const DEFAULT_BUDGET_MB: usize = 192;

/// A state whose tokens go on this many past the shared prefix is kept (and the prefix copied).
const KEEP_TAIL: usize = 16;

/// Idle states, most recently used last.
pub struct Pool {
    budget: usize,
    idle: Vec<State>,
}

/// A checked-out state and how many of its prompt's tokens it already held.
pub struct Checkout {
    pub state: State,
    pub reused: usize,
}

impl Pool {
    pub fn new(budget_bytes: usize) -> Pool {
        Pool { budget: budget_bytes, idle: Vec::new() }
    }

    /// The budget from `KEEL_KV_CACHE_MB`, else the default.
    pub fn budget_from_env() -> usize {
        std::env::var("KEEL_KV_CACHE_MB").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(DEFAULT_BUDGET_MB) << 20
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// KV bytes of the idle states.
    pub fn idle_bytes(&self) -> usize {
        self.idle.iter().map(State::kv_bytes).sum()
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// The best state for `prompt`: its cached prefix is at most `prompt.len() - 1` tokens, so that the last
    /// prompt token is always run (its logits choose the first reply token).
    pub fn checkout(&mut self, config: &Config, prompt: &[u32]) -> Checkout {
        let limit = prompt.len().saturating_sub(1);
        let best = self
            .idle
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.common_prefix(prompt).min(limit)))
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(i, n)| (*n, *i));
        let Some((i, n)) = best else {
            return Checkout { state: State::default(), reused: 0 };
        };
        let state = if self.idle[i].len() - n > KEEP_TAIL {
            // That state goes on to another sequence (another conversation after the shared system prompt): keep
            // it, and continue from a copy of the shared part. A short tail is this sequence's own last reply
            // re-read differently, not worth keeping.
            let copy = self.idle[i].prefix_copy(config, n);
            let kept = self.idle.remove(i);
            self.idle.push(kept);
            copy
        } else {
            let mut s = self.idle.remove(i);
            s.truncate(n);
            s
        };
        Checkout { state, reused: n }
    }

    /// Returns a state to the pool, evicting the least recently used until the idle bytes fit the budget (a
    /// state larger than the whole budget is not kept).
    pub fn checkin(&mut self, state: State) {
        if state.is_empty() {
            return;
        }
        // A state whose tokens another idle state extends (or equals) adds nothing.
        if self.idle.iter().any(|s| s.len() >= state.len() && s.common_prefix(&state.tokens) == state.len()) {
            return;
        }
        // Idle states that are prefixes of this one are now redundant.
        self.idle.retain(|s| state.common_prefix(&s.tokens) < s.len());
        self.idle.push(state);
        while self.idle_bytes() > self.budget && !self.idle.is_empty() {
            self.idle.remove(0);
        }
    }

    /// The longest prefix of `prompt` an idle state holds.
    pub fn best_prefix(&self, prompt: &[u32]) -> usize {
        self.idle.iter().map(|s| s.common_prefix(prompt)).max().unwrap_or(0)
    }

    /// Adds a state loaded from disk as the most recently used, evicting the least recently used past the budget.
    pub fn seed(&mut self, state: State) {
        if state.is_empty() {
            return;
        }
        self.idle.push(state);
        while self.idle_bytes() > self.budget && !self.idle.is_empty() {
            self.idle.remove(0);
        }
    }
}
