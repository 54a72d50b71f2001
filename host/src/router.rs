//! Matching messages to plugin routes, with Slack Machine's semantics.
//!
//! - A `listen-to` route sees every message; a `respond-to` route sees only
//!   messages addressed to the bot. Both are matched against the text with
//!   the bot mention removed (the adapter removes it).
//! - A pattern matches if it is found anywhere in the text (Python's
//!   `re.search`): anchor it with `^` and `$` to match whole messages.
//! - Every matching route runs, not only the first: `listen-to` routes in
//!   plugin order, then `respond-to` routes in plugin order, each plugin's
//!   routes in the order it declared them.
//! - Routes are case-insensitive unless the plugin declares otherwise
//!   (Slack Machine's default flag is `re.IGNORECASE`).
//! - Named groups become the handler's arguments; a group that did not take
//!   part in the match is passed as `none` (Python's `None`).
//!
//! # Bounded work
//!
//! Plugins choose their patterns and senders choose their text, so the work
//! of matching one message is bounded (the `[routing]` table,
//! [`RoutingConfig`]). Rust's regex engines never backtrack exponentially,
//! but a search can still cost time proportional to the length of the text
//! times the size of the route's automaton: the regex engine's fast lazy
//! DFA gives up on some patterns (a Unicode word boundary `\b` on non-ASCII
//! text, or an automaton too large for its cache) and the PikeVM, which
//! then searches, steps through every live state of the automaton for each
//! byte. The groups of a route that matches are found by a bounded
//! backtracker on short texts and by the PikeVM on longer ones; the
//! backtracker visits each state at each position at most once, within
//! fixed bounds of memory (4 KiB for the pairs of state and position it
//! visited, 16 KiB for its stack), so it too takes time proportional to
//! the text times the automaton. Each route's [cost](CompiledRoute::cost)
//! measures that automaton;
//! a plugin's routes together must stay within `max_plugin_route_bytes`
//! ([`compile`]) and every loaded plugin's within `max_host_route_bytes`
//! ([`check_host_budget`]), and the host matches at most
//! `max_message_bytes` of text.

use std::sync::{Arc, OnceLock};

use regex_automata::hybrid;
use regex_automata::nfa::thompson::{self, NFA, backtrack::BoundedBacktracker, pikevm::PikeVM};
use regex_automata::util::captures::Captures;
use regex_automata::util::pool::{Pool, PoolGuard};
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{Anchored, Input, MatchKind, PatternID, PatternSet};
use regex_syntax::hir::{Hir, Look};

use crate::config::RoutingConfig;

/// Which messages a route sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Messages addressed to the bot (Slack Machine's `respond_to`); the
    /// pattern is matched against the text with the mention removed.
    RespondTo,
    /// Every message the bot sees (Slack Machine's `listen_to`).
    ListenTo,
}

impl RouteKind {
    /// Its name in listings: `respond-to` or `listen-to`, as the WIT names
    /// it.
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::RespondTo => "respond-to",
            RouteKind::ListenTo => "listen-to",
        }
    }
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A route as a plugin's manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Which messages it sees.
    pub kind: RouteKind,
    /// A regular expression, searched for anywhere in the text.
    pub pattern: String,
    /// Match without regard to case.
    pub ignore_case: bool,
    /// The handler's name, for logs and listings.
    pub handler: String,
    /// One line for the help manual; empty for none.
    pub doc: String,
}

/// A message a handler sent: in the channel of the message it answers (or,
/// for a scheduled call, the schedule's channel), in a thread when it asked
/// for one, mentioning the sender for a `reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The text.
    pub text: String,
    /// The thread to post in: the id of its first message.
    pub thread: Option<String>,
    /// The user to mention (the sender, for Slack Machine's `reply`).
    pub mention: Option<String>,
}

impl Reply {
    /// A plain reply: `text`, in no thread, mentioning no one.
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            thread: None,
            mention: None,
        }
    }
}

impl std::fmt::Display for Reply {
    /// The text as a chat without threads shows it: `@user: text` for a
    /// mention.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mention {
            Some(user) => write!(f, "@{user}: {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

impl PartialEq<&str> for Reply {
    /// Whether the reply is the plain text `other`.
    fn eq(&self, other: &&str) -> bool {
        self.thread.is_none() && self.mention.is_none() && self.text == *other
    }
}

impl PartialEq<String> for Reply {
    fn eq(&self, other: &String) -> bool {
        *self == other.as_str()
    }
}

/// A named group of a route's pattern, and the text it matched (`None`
/// when the group took no part in the match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The group's name.
    pub name: String,
    /// What it matched.
    pub value: Option<String>,
}

/// Most routes one plugin may declare.
pub const MAX_ROUTES: usize = 256;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Most memory the automaton (NFA) of one pattern may take: patterns
/// come from plugins, so a pathological one must not exhaust the host while
/// it compiles. A plugin's routes are also bounded together, by
/// `[routing] max_plugin_route_bytes`.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Capacity of one route's lazy DFA cache, in bytes. The lazy DFA builds
/// its states as a search needs them and starts over when the cache is
/// full; the regex engine's default of 2 MiB would let each route take
/// megabytes in each set of caches. An ordinary route's states fit in this
/// many; a route whose automaton does not is searched by the PikeVM, which
/// its cost accounts for.
const LAZY_DFA_CACHE_BYTES: usize = 64 * 1024;
/// The most bytes of the set of (automaton state, text position) pairs
/// that the bounded backtracker visits when it finds a route's groups:
/// 32,768 pairs, so 511 bytes of text for an automaton of 64 states, 90
/// for one of 357 states (such as one with a Unicode `\w`). It visits each
/// pair at most once, so it takes time proportional to the states times
/// the text's length, as the PikeVM does; on a short text it takes about a
/// third of the PikeVM's time.
const BACKTRACK_VISITED_BYTES: usize = 4 * 1024;

/// The most bytes of the stack of states still to try that the bounded
/// backtracker may grow while finding a route's groups. Each visited pair
/// pushes at most as many frames (of 16 bytes) as its state has further
/// branches, so a route whose automaton has `b` branches in all (the
/// alternatives of its unions beyond the first, and its group boundaries)
/// is searched by the backtracker only on texts of at most `1023 / b - 1`
/// bytes (126 bytes for the 8 branches of `^get (?P<n>\d+) (?P<key>\S+)$`),
/// and by the PikeVM on longer ones.
/// With [`BACKTRACK_VISITED_BYTES`], a route's backtracker cache holds at
/// most 20 KiB.
const BACKTRACK_STACK_BYTES: usize = 16 * 1024;

/// The bytes of one frame of the bounded backtracker's stack: a state
/// and a position, or a group boundary and its offset.
const BACKTRACK_FRAME_BYTES: usize = 16;

/// Capacity of the lazy DFA cache of one [`RouteSet`], in bytes: its
/// states hold the states of all its routes at once, so it gets the room of
/// a few routes; where that is too little, it gives up as a route's does
/// and the table searches route by route.
const SET_DFA_CACHE_BYTES: usize = 256 * 1024;

/// The most automaton bytes of the routes one [`RouteSet`] searches for:
/// a kind's routes beyond it form further sets. A set of this much needs
/// about half of [`SET_DFA_CACHE_BYTES`] of lazy DFA cache at the least.
const MAX_SET_ROUTE_BYTES: usize = 256 * 1024;

/// The most [`RouteSet`]s a table has; routes beyond them are searched one
/// by one. With [`MAX_SET_ROUTE_BYTES`], this bounds what the sets cost to
/// compile at each reload, and their caches.
const MAX_SETS: usize = 16;

/// A route's compiled pattern, each of its engines bounded in memory:
///
/// - the automaton (NFA), by [`REGEX_SIZE_LIMIT`];
/// - the lazy DFA, which tells whether a text matches, by
///   [`LAZY_DFA_CACHE_BYTES`] a cache; where it gives up (see the module
///   documentation) the PikeVM decides;
/// - the bounded backtracker, which finds the groups of a match on a short
///   text, by [`BACKTRACK_VISITED_BYTES`] and [`BACKTRACK_STACK_BYTES`];
/// - the PikeVM, which finds the groups of a match on a longer text, by
///   the automaton: its scratch space grows with the automaton and is
///   counted in the route's cost.
///
/// Nothing else is compiled. A route's groups are found only when it
/// matches, so the reverse automata and the one-pass DFA that the regex
/// engine's all-purpose `meta` regex compiles for every pattern would cost
/// more at every start (more than half of compiling a route) than they
/// save on the few messages that match.
#[derive(Debug)]
struct Matcher {
    /// `None` where the lazy DFA cannot be built for the automaton (its
    /// cache would not hold the few states a search needs).
    dfa: Option<hybrid::dfa::DFA>,
    /// A literal search that the lazy DFA and the PikeVM skip ahead with,
    /// for patterns that begin with a literal.
    prefilter: Option<Prefilter>,
    backtrack: BoundedBacktracker,
    /// The longest text the backtracker searches, within both of its
    /// bounds: longer ones are the PikeVM's.
    backtrack_max_len: usize,
    pikevm: PikeVM,
    /// The parsed pattern, kept where a [`RouteSet`] can search for it
    /// together with other routes: where its lazy DFA could be built and it
    /// has no Unicode word boundary (on which a lazy DFA gives up for any
    /// non-ASCII text, which would make the whole set give up).
    set_member: Option<Arc<Hir>>,
    /// Whether every match begins at the start of the text.
    anchored: bool,
}

/// The scratch space of one search of a [`Matcher`].
#[derive(Debug, Clone)]
struct SearchCache {
    dfa: Option<hybrid::dfa::Cache>,
    backtrack: thompson::backtrack::Cache,
    pikevm: thompson::pikevm::Cache,
}

impl SearchCache {
    fn memory_usage(&self) -> usize {
        self.dfa
            .as_ref()
            .map_or(0, hybrid::dfa::Cache::memory_usage)
            + self.backtrack.memory_usage()
            + self.pikevm.memory_usage()
    }
}

/// The compiler of route automata. One compiles all of a plugin's routes:
/// it keeps the scratch space it builds Unicode classes in (a table of ten
/// thousand entries) from one pattern to the next.
fn nfa_compiler() -> thompson::Compiler {
    let mut compiler = thompson::Compiler::new();
    compiler.configure(NFA::config().nfa_size_limit(Some(REGEX_SIZE_LIMIT)));
    compiler
}

impl Matcher {
    /// The matcher of `hir`, its automaton built by `compiler` (see
    /// [`nfa_compiler`]).
    fn new(
        compiler: &thompson::Compiler,
        hir: &regex_syntax::hir::Hir,
    ) -> Result<Self, Box<thompson::BuildError>> {
        let nfa = compiler.build_from_hir(hir).map_err(Box::new)?;
        // A pattern anchored at the start is tried at the start only: a
        // literal search would not save anything, and building one for
        // the case variants of its literal costs more than the rest.
        let anchored = hir.properties().look_set_prefix().contains(Look::Start);
        let prefilter = (!anchored)
            .then(|| Prefilter::from_hir_prefix(MatchKind::LeftmostFirst, hir))
            .flatten()
            .filter(Prefilter::is_fast);
        let dfa = hybrid::dfa::Builder::new()
            .configure(
                hybrid::dfa::Config::new()
                    .prefilter(prefilter.clone())
                    .specialize_start_states(prefilter.is_some())
                    // A Unicode word boundary is handled on ASCII text; on
                    // other text the lazy DFA quits and the PikeVM decides.
                    .unicode_word_boundary(true)
                    .cache_capacity(LAZY_DFA_CACHE_BYTES)
                    // Refuse to build rather than take more than the
                    // capacity...
                    .skip_cache_capacity_check(false)
                    // ...and give up on a search that keeps clearing the
                    // cache, which the PikeVM then does in bounded time.
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa.clone())
            .ok();
        let backtrack = BoundedBacktracker::builder()
            .configure(
                BoundedBacktracker::config()
                    .prefilter(prefilter.clone())
                    .visited_capacity(BACKTRACK_VISITED_BYTES),
            )
            .build_from_nfa(nfa.clone())
            .map_err(Box::new)?;
        let branches = nfa
            .states()
            .iter()
            .map(|state| match state {
                thompson::State::Union { alternates } => alternates.len().saturating_sub(1),
                thompson::State::BinaryUnion { .. } | thompson::State::Capture { .. } => 1,
                _ => 0,
            })
            .sum::<usize>();
        // At most `branches` frames for each of the `len + 1` positions,
        // and the first.
        let backtrack_max_len = (BACKTRACK_STACK_BYTES / BACKTRACK_FRAME_BYTES - 1)
            .checked_div(branches)
            .unwrap_or(usize::MAX)
            .saturating_sub(1)
            .min(backtrack.max_haystack_len());
        let pikevm = PikeVM::builder()
            .configure(PikeVM::config().prefilter(prefilter.clone()))
            .build_from_nfa(nfa)
            .map_err(Box::new)?;
        let set_member = (dfa.is_some() && !hir.properties().look_set().contains_word_unicode())
            .then(|| Arc::new(hir.clone()));
        Ok(Self {
            dfa,
            prefilter,
            backtrack,
            backtrack_max_len,
            pikevm,
            set_member,
            anchored,
        })
    }

    fn create_cache(&self) -> SearchCache {
        SearchCache {
            dfa: self.dfa.as_ref().map(hybrid::dfa::Cache::new),
            backtrack: self.backtrack.create_cache(),
            pikevm: self.pikevm.create_cache(),
        }
    }

    /// Finds the groups of the first match in the input: by the bounded
    /// backtracker where the text is short enough for it, else by the
    /// PikeVM. Both find the same match and groups.
    fn captures(&self, cache: &mut SearchCache, input: &Input<'_>, caps: &mut Captures) {
        if input.get_span().len() <= self.backtrack_max_len
            && self
                .backtrack
                .try_search(&mut cache.backtrack, input, caps)
                .is_ok()
        {
            return;
        }
        self.pikevm.search(&mut cache.pikevm, input, caps);
    }

    /// The heap bytes of the compiled pattern, not counting its caches.
    fn memory_usage(&self) -> usize {
        self.pikevm.get_nfa().memory_usage()
            + self.prefilter.as_ref().map_or(0, Prefilter::memory_usage)
    }

    /// Whether the pattern matches anywhere in the input.
    fn is_match(&self, cache: &mut SearchCache, input: &Input<'_>) -> bool {
        if let (Some(dfa), Some(dfa_cache)) = (&self.dfa, cache.dfa.as_mut()) {
            // An error is the lazy DFA giving up: the PikeVM decides.
            if let Ok(found) = dfa.try_search_fwd(dfa_cache, &input.clone().earliest(true)) {
                return found.is_some();
            }
        }
        self.pikevm.is_match(&mut cache.pikevm, input.clone())
    }
}

/// A message as an adapter received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The text, with any bot mention removed.
    pub text: String,
    /// Who sent it: the sender's id.
    pub user: String,
    /// The sender's name to show, where the adapter knows one.
    pub user_name: Option<String>,
    /// Where it was sent.
    pub channel: String,
    /// Whether it was addressed to the bot.
    pub addressed: bool,
    /// The message's own id in its channel, where the adapter has one
    /// (Slack's `ts`).
    pub id: Option<String>,
    /// The thread the message was posted in, if any: the id of the
    /// thread's first message.
    pub thread: Option<String>,
}

impl Incoming {
    /// A message addressed to the bot, as every console line is.
    pub fn addressed(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            user: "console".into(),
            user_name: None,
            channel: "console".into(),
            addressed: true,
            id: None,
            thread: None,
        }
    }

    /// A message the bot overhears.
    pub fn overheard(text: impl Into<String>) -> Self {
        Self {
            addressed: false,
            ..Self::addressed(text)
        }
    }
}

/// Why a plugin's route was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// More routes than [`MAX_ROUTES`].
    #[error("declares {0} routes; at most {MAX_ROUTES} are allowed")]
    TooMany(usize),
    /// The pattern does not compile.
    #[error("route {index} ({handler}) has an invalid pattern {pattern:?}: {message}")]
    BadPattern {
        /// The route's position in the manifest.
        index: usize,
        /// The handler's name.
        handler: String,
        /// The pattern, cut to 200 bytes.
        pattern: String,
        /// Why it does not compile.
        message: String,
    },
    /// The routes' total cost is over `[routing] max_plugin_route_bytes`.
    #[error(
        "its routes take {total} bytes compiled, over the limit of {limit} bytes \
         ([routing] max_plugin_route_bytes); the most expensive is route {index} \
         ({handler}), {cost} bytes"
    )]
    PluginBudget {
        /// The sum of the routes' costs.
        total: usize,
        /// `max_plugin_route_bytes`.
        limit: usize,
        /// The most expensive route's position in the manifest.
        index: usize,
        /// Its handler's name.
        handler: String,
        /// Its cost.
        cost: usize,
    },
    /// Loading the plugin would take the host over `[routing]
    /// max_host_route_bytes`.
    #[error(
        "its routes take {plugin} bytes compiled and those of the plugins loaded \
         {loaded} bytes, over the host's limit of {limit} bytes ([routing] \
         max_host_route_bytes); its most expensive is route {index} ({handler}), \
         {cost} bytes"
    )]
    HostBudget {
        /// The sum of the plugin's routes' costs.
        plugin: usize,
        /// The sum of the costs of the plugins already loaded.
        loaded: usize,
        /// `max_host_route_bytes`.
        limit: usize,
        /// The plugin's most expensive route's position in the manifest.
        index: usize,
        /// Its handler's name.
        handler: String,
        /// Its cost.
        cost: usize,
    },
}

/// A compiled route of one plugin.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    /// Index in the plugin's manifest, passed back to its `handle`.
    pub index: u32,
    /// Which messages it sees.
    pub kind: RouteKind,
    /// The handler's name.
    pub handler: String,
    /// One line for the help manual; empty for none.
    pub doc: String,
    pattern: String,
    matcher: Arc<Matcher>,
    cost: usize,
}

impl CompiledRoute {
    /// The pattern as declared.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The route's compiled size in bytes, which its budgets count: the
    /// memory its compiled pattern holds (the NFA and the literal
    /// prefilter, as the regex engine reports them), plus that of a fresh
    /// search cache of it (mostly the PikeVM's scratch space, which grows
    /// with the NFA's states times its capture groups).
    ///
    /// It tracks the worst-case cost of matching: the PikeVM, the engine
    /// that searches when the faster ones give up, takes time proportional
    /// to the length of the text times the states it steps through (and,
    /// finding groups, the slots it copies), which is what these bytes
    /// hold. A pattern that compiles to a plain literal search costs little
    /// and is searched as fast. The lazy DFA's cache, grown during
    /// searches, is not counted: it is bounded by the engine settings, at
    /// most 64 KiB a route.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// The captures if the route matches `msg`.
    pub fn matches(&self, msg: &Incoming) -> Option<Vec<Capture>> {
        self.matches_with(&mut self.matcher.create_cache(), msg)
    }

    /// [`matches`](Self::matches) with a search cache of this route's
    /// pattern, so that a router matching many messages reuses its caches.
    fn matches_with(&self, cache: &mut SearchCache, msg: &Incoming) -> Option<Vec<Capture>> {
        if self.kind == RouteKind::RespondTo && !msg.addressed {
            return None;
        }
        // Most routes do not match: tell that first, without the cost of
        // finding the groups.
        if !self.matcher.is_match(cache, &Input::new(&msg.text)) {
            return None;
        }
        self.captures_with(cache, msg)
    }

    /// The captures of the route's match in `msg`, for a route known to
    /// match (by a search of its [`RouteSet`]): `None` only if it does not
    /// after all.
    fn captures_with(&self, cache: &mut SearchCache, msg: &Incoming) -> Option<Vec<Capture>> {
        let input = Input::new(&msg.text);
        let group_info = self.matcher.pikevm.get_nfa().group_info();
        let mut caps = Captures::all(group_info.clone());
        self.matcher.captures(cache, &input, &mut caps);
        if !caps.is_match() {
            return None;
        }
        Some(
            group_info
                .pattern_names(PatternID::ZERO)
                .enumerate()
                .filter_map(|(i, name)| {
                    name.map(|name| Capture {
                        name: name.to_owned(),
                        value: caps
                            .get_group(i)
                            .map(|span| msg.text[span.range()].to_owned()),
                    })
                })
                .collect(),
        )
    }
}

/// Routes of one kind searched for together: one lazy DFA over all their
/// patterns tells, in one pass over the text, which of them match, where
/// searching route by route takes a search each, most of them failing.
///
/// The routes whose every match begins at the start of the text form sets
/// of their own, searched anchored: such a search ends as soon as none of
/// the routes can match any more, not at the end of the text.
#[derive(Debug)]
struct RouteSet {
    kind: RouteKind,
    anchored: bool,
    dfa: hybrid::dfa::DFA,
}

impl RouteSet {
    /// The set of the patterns `members`, or `None` where compiling its
    /// automaton would take more than `max_nfa_bytes` or its lazy DFA's cache would
    /// not hold the states a search needs: its routes are then searched
    /// one by one.
    fn new(
        kind: RouteKind,
        anchored: bool,
        members: &[&Hir],
        max_nfa_bytes: usize,
    ) -> Option<Self> {
        // Which routes match is all a set tells: its automaton has no
        // groups, which makes it smaller than its routes' together.
        let nfa = thompson::Compiler::new()
            .configure(
                NFA::config()
                    .nfa_size_limit(Some(max_nfa_bytes))
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_many_from_hir(members)
            .ok()?;
        let dfa = hybrid::dfa::Builder::new()
            .configure(
                hybrid::dfa::Config::new()
                    // Every pattern that matches, not only the first.
                    .match_kind(MatchKind::All)
                    .cache_capacity(SET_DFA_CACHE_BYTES)
                    .skip_cache_capacity_check(false)
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa)
            .ok()?;
        Some(Self {
            kind,
            anchored,
            dfa,
        })
    }

    /// Records in `found` the patterns that match `msg`; `false` where the
    /// lazy DFA gave up (see [`SET_DFA_CACHE_BYTES`]) or the set's routes
    /// do not see the message.
    fn search(&self, cache: &mut SetCache, msg: &Incoming) -> bool {
        cache.found.clear();
        if self.kind == RouteKind::RespondTo && !msg.addressed {
            return false;
        }
        let anchored = if self.anchored {
            Anchored::Yes
        } else {
            Anchored::No
        };
        let input = Input::new(&msg.text).anchored(anchored);
        self.dfa
            .try_which_overlapping_matches(&mut cache.dfa, &input, &mut cache.found)
            .is_ok()
    }

    fn create_cache(&self) -> SetCache {
        SetCache {
            dfa: self.dfa.create_cache(),
            found: PatternSet::new(self.dfa.pattern_len()),
        }
    }
}

/// The scratch space of one search of a [`RouteSet`], and what it found.
#[derive(Debug)]
struct SetCache {
    dfa: hybrid::dfa::Cache,
    found: PatternSet,
}

/// The scratch space of one message's matching in a [`Routes`] table: a
/// search cache a route and one a route set.
#[derive(Debug)]
struct TableCache {
    routes: Vec<SearchCache>,
    sets: Vec<SetCache>,
}

/// Builds the search caches of a [`Routes`] table.
type CacheFactory =
    Box<dyn Fn() -> TableCache + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// Every route of a set of plugins, in the order [`Routes::matching`] runs
/// them, with search caches reused from one message to the next.
///
/// # One search for many routes
///
/// Most routes do not match a given message, and searching them one by one
/// costs a search each. The table instead groups the routes by kind and by
/// whether they are anchored at the start of the text, and searches each
/// group at once ([`RouteSet`]): one pass over the text tells which of its
/// routes match, and only those are searched again, for their groups. A
/// route joins a group unless its pattern has a Unicode word boundary (`\b`
/// on non-ASCII text makes a lazy DFA give up, which would make its whole
/// group give up) or its automaton is too large for a lazy DFA; those
/// routes, and those of a group whose search gives up on a message, are
/// searched one by one as before. A group's automaton has no groups of
/// its own; a group whose compiling would take more than twice its
/// routes' automata together (and 64 KiB) is not built. A group holds
/// routes of at most 256 KiB of automata together, more form further
/// groups, and a table has at most 16: what groups cost to compile at a
/// reload stays within 16 × 576 KiB (9 MiB), however many plugins the host
/// has, and routes beyond the 16 groups are searched one by one.
///
/// # Caches
///
/// A pattern needs scratch space (its cache) for each search. Taking one
/// cache per route from a pool of each route's own would cost two atomic
/// operations per route and message, and make the cores that route
/// messages at once contend for the same pool entries; the table instead
/// takes one set of caches, for all its routes, per message.
///
/// The table keeps as many sets as messages were ever matched at once
/// (one a thread matching). One set takes at most the table's
/// [`cost`](Self::cost) (the PikeVM's scratch space is part of each
/// route's cost) plus, for each route, its lazy DFA cache: at most
/// 64 KiB, and only as a search fills it, which an ordinary route's does
/// not (a few KiB); for each route whose groups were found, its
/// backtracker's scratch space, at most 20 KiB (of which
/// [`cache_memory`](Self::cache_memory) counts the visited set, not the
/// room the stack kept); and for each group, at most 256 KiB (4 MiB for
/// all).
pub struct Routes {
    /// `(plugin, route)` positions, listen-to routes first.
    order: Vec<(usize, usize)>,
    /// The routes to search together, by set.
    groups: Vec<Group>,
    sets: OnceLock<Sets>,
    caches: Pool<TableCache, CacheFactory>,
    cost: usize,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("routes", &self.order.len())
            .field("sets", &self.sets.get().map(|s| s.sets.len()))
            .finish_non_exhaustive()
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new(std::iter::empty())
    }
}

/// A group of routes to search together, as [`Routes::new`] gathers them.
#[derive(Debug)]
struct Group {
    kind: RouteKind,
    anchored: bool,
    /// Positions in the table's order.
    routes: Vec<usize>,
    patterns: Vec<Arc<Hir>>,
    nfa_bytes: usize,
}

/// A table's [`RouteSet`]s, once built.
#[derive(Debug)]
struct Sets {
    sets: Vec<RouteSet>,
    /// For each route of the table's order, the set that searches for it
    /// and its pattern there.
    in_set: Vec<Option<(usize, PatternID)>>,
}

impl Sets {
    fn build(groups: &[Group], routes: usize) -> Self {
        let mut in_set = vec![None; routes];
        let mut sets = Vec::new();
        // A group of one route would search as its route does, at more cost.
        for group in groups.iter().filter(|g| g.routes.len() > 1) {
            if sets.len() == MAX_SETS {
                break;
            }
            // Compiling takes more than the automaton it yields: twice its
            // routes' automata, and room for the smallest groups.
            let max_nfa_bytes = 2 * group.nfa_bytes + 64 * 1024;
            let patterns: Vec<&Hir> = group.patterns.iter().map(|p| &**p).collect();
            let Some(set) = RouteSet::new(group.kind, group.anchored, &patterns, max_nfa_bytes)
            else {
                continue;
            };
            for (pattern, &position) in group.routes.iter().enumerate() {
                in_set[position] = Some((sets.len(), PatternID::must(pattern)));
            }
            sets.push(set);
        }
        Self { sets, in_set }
    }
}

impl Routes {
    /// The table of `plugins`' routes, each plugin given as its routes,
    /// with its [route sets](Self#one-search-for-many-routes) built.
    /// Listen-to routes run first, in plugin order, then respond-to routes
    /// in plugin order; each plugin's in the order it declared them.
    pub fn new<'a>(plugins: impl IntoIterator<Item = &'a [CompiledRoute]> + Clone) -> Self {
        let table = Self::deferred(plugins);
        table.build_sets();
        table
    }

    /// [`new`](Self::new), without building the route sets: the table
    /// matches at once, searching route by route, until
    /// [`build_sets`](Self::build_sets) has run, which takes about as
    /// long again as compiling the routes did (a host builds them on
    /// another thread, after a reload).
    pub fn deferred<'a>(plugins: impl IntoIterator<Item = &'a [CompiledRoute]> + Clone) -> Self {
        let mut order = Vec::new();
        let mut matchers = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut cost = 0;
        for kind in [RouteKind::ListenTo, RouteKind::RespondTo] {
            for (p, routes) in plugins.clone().into_iter().enumerate() {
                for (r, route) in routes.iter().enumerate() {
                    if route.kind != kind {
                        continue;
                    }
                    let matcher = &route.matcher;
                    if let Some(hir) = &matcher.set_member {
                        let anchored = matcher.anchored;
                        let bytes = matcher.pikevm.get_nfa().memory_usage();
                        let group = match groups.iter_mut().position(|g| {
                            g.kind == kind
                                && g.anchored == anchored
                                && g.nfa_bytes + bytes <= MAX_SET_ROUTE_BYTES
                        }) {
                            Some(g) => &mut groups[g],
                            None => {
                                groups.push(Group {
                                    kind,
                                    anchored,
                                    routes: Vec::new(),
                                    patterns: Vec::new(),
                                    nfa_bytes: 0,
                                });
                                groups.last_mut().expect("just pushed")
                            }
                        };
                        group.routes.push(order.len());
                        group.patterns.push(hir.clone());
                        group.nfa_bytes += bytes;
                    }
                    order.push((p, r));
                    matchers.push(matcher.clone());
                    cost += route.cost;
                }
            }
        }
        let factory: CacheFactory = Box::new(move || TableCache {
            routes: matchers.iter().map(|m| m.create_cache()).collect(),
            sets: Vec::new(),
        });
        Self {
            order,
            groups,
            sets: OnceLock::new(),
            caches: Pool::new(factory),
            cost,
        }
    }

    /// Builds the table's route sets, if not yet built; matching uses
    /// them from then on. Safe to call from any thread, at any time.
    pub fn build_sets(&self) {
        self.sets
            .get_or_init(|| Sets::build(&self.groups, self.order.len()));
    }

    /// The sum of the [costs](CompiledRoute::cost) of the table's routes.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// The heap bytes of the set of search caches the calling thread would
    /// match its next message with, as earlier messages left it (a set
    /// grows during searches, within the bound above).
    pub fn cache_memory(&self) -> usize {
        let cache = self.caches.get();
        cache
            .routes
            .iter()
            .map(SearchCache::memory_usage)
            .sum::<usize>()
            + cache
                .sets
                .iter()
                .map(|s| s.dfa.memory_usage())
                .sum::<usize>()
    }

    /// The routes matching `msg`, in order, as `(plugin, route,
    /// captures)`: `plugin` is the plugin's position as given to
    /// [`Routes::new`], and `routes_of(plugin)` must return the same routes
    /// as were given there.
    pub fn matching<'a>(
        &self,
        routes_of: impl Fn(usize) -> &'a [CompiledRoute],
        msg: &Incoming,
    ) -> Vec<(usize, &'a CompiledRoute, Vec<Capture>)> {
        self.matching_indices(&routes_of, msg)
            .into_iter()
            .map(|(p, r, captures)| (p, &routes_of(p)[r], captures))
            .collect()
    }

    /// [`matching`](Self::matching), with each route given as its position
    /// in `routes_of(plugin)`: `(plugin, route, captures)`. Positions, not
    /// references, let a caller match on another thread with data it owns
    /// (an `Arc` of the plugins' routes, say) and look the routes up after.
    pub fn matching_indices<'a>(
        &self,
        routes_of: impl Fn(usize) -> &'a [CompiledRoute],
        msg: &Incoming,
    ) -> Vec<(usize, usize, Vec<Capture>)> {
        let mut cache: PoolGuard<'_, TableCache, CacheFactory> = self.caches.get();
        let TableCache {
            routes: route_caches,
            sets: set_caches,
        } = &mut *cache;
        // Whether each set searched; the routes of one that did not, and
        // every route before the sets are built, are searched one by one.
        let mut searched = [false; MAX_SETS];
        let sets = self.sets.get();
        if let Some(sets) = sets {
            if set_caches.len() != sets.sets.len() {
                *set_caches = sets.sets.iter().map(RouteSet::create_cache).collect();
            }
            for ((set, cache), searched) in sets
                .sets
                .iter()
                .zip(set_caches.iter_mut())
                .zip(&mut searched)
            {
                *searched = set.search(cache, msg);
            }
        }
        let mut found = Vec::new();
        for (i, (&(p, r), cache)) in self.order.iter().zip(route_caches.iter_mut()).enumerate() {
            let route = &routes_of(p)[r];
            let in_set = sets.and_then(|s| s.in_set[i]);
            let captures = match in_set {
                Some((set, pattern)) if searched[set] => set_caches[set]
                    .found
                    .contains(pattern)
                    .then(|| route.captures_with(cache, msg))
                    .flatten(),
                _ => route.matches_with(cache, msg),
            };
            if let Some(captures) = captures {
                found.push((p, r, captures));
            }
        }
        found
    }
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Compiles a plugin's declared routes, and refuses them if their costs
/// together exceed `limits.max_plugin_route_bytes`.
pub fn compile(routes: &[Route], limits: &RoutingConfig) -> Result<Vec<CompiledRoute>, RouteError> {
    if routes.len() > MAX_ROUTES {
        return Err(RouteError::TooMany(routes.len()));
    }
    let mut compiled = Vec::with_capacity(routes.len());
    // Past the budget, each route is still compiled, for the total and the
    // most expensive route the error reports, but not kept: a plugin over
    // its budget never holds more than the budget and one route.
    let mut total = 0usize;
    let mut worst: Option<(usize, usize)> = None;
    let compiler = nfa_compiler();
    for (index, route) in routes.iter().enumerate() {
        let route = compile_one(&compiler, index, route)?;
        total = total.saturating_add(route.cost);
        if worst.is_none_or(|(_, cost)| route.cost > cost) {
            worst = Some((index, route.cost));
        }
        if total <= limits.max_plugin_route_bytes {
            compiled.push(route);
        } else {
            compiled.clear();
        }
    }
    match worst {
        Some((index, cost)) if total > limits.max_plugin_route_bytes => {
            Err(RouteError::PluginBudget {
                total,
                limit: limits.max_plugin_route_bytes,
                index,
                handler: cut(&routes[index].handler, 100),
                cost,
            })
        }
        _ => Ok(compiled),
    }
}

/// Refuses a plugin whose routes (`new`, from [`compile`]) would take the
/// host over `limits.max_host_route_bytes`, given the sum of the costs of
/// the plugins loaded already (`loaded_total`; a plugin being replaced is
/// not among them). A plugin without routes is never refused.
pub fn check_host_budget(
    loaded_total: usize,
    new: &[CompiledRoute],
    limits: &RoutingConfig,
) -> Result<(), RouteError> {
    let plugin = new
        .iter()
        .fold(0usize, |sum, route| sum.saturating_add(route.cost));
    // The first of the most expensive routes.
    let Some(worst) = new.iter().rev().max_by_key(|route| route.cost) else {
        return Ok(());
    };
    if plugin == 0 || loaded_total.saturating_add(plugin) <= limits.max_host_route_bytes {
        return Ok(());
    }
    Err(RouteError::HostBudget {
        plugin,
        loaded: loaded_total,
        limit: limits.max_host_route_bytes,
        index: worst.index as usize,
        handler: worst.handler.clone(),
        cost: worst.cost,
    })
}

/// Compiles the route at `index` of a manifest with `compiler`.
fn compile_one(
    compiler: &thompson::Compiler,
    index: usize,
    route: &Route,
) -> Result<CompiledRoute, RouteError> {
    let bad = |message: String| RouteError::BadPattern {
        index,
        handler: cut(&route.handler, 100),
        pattern: cut(&route.pattern, 200),
        message,
    };
    if route.pattern.len() > MAX_PATTERN_BYTES {
        return Err(bad(format!("longer than {MAX_PATTERN_BYTES} bytes")));
    }
    // Parsed first for regex-syntax's errors, which point at the fault in
    // the pattern.
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(route.ignore_case)
        .build()
        .parse(&route.pattern)
        .map_err(|e| bad(e.to_string()))?;
    let matcher = Matcher::new(compiler, &hir).map_err(|e| match e.size_limit() {
        Some(limit) => bad(format!(
            "too complex: compiled, it would exceed the limit of {} KiB",
            limit / 1024
        )),
        None => bad(e.to_string()),
    })?;
    let cost = matcher.memory_usage() + matcher.create_cache().memory_usage();
    Ok(CompiledRoute {
        index: u32::try_from(index).expect("bounded by MAX_ROUTES"),
        kind: route.kind,
        handler: cut(&route.handler, 100),
        doc: route.doc.clone(),
        pattern: route.pattern.clone(),
        matcher: Arc::new(matcher),
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kind: RouteKind, pattern: &str) -> Route {
        Route {
            kind,
            pattern: pattern.into(),
            ignore_case: true,
            handler: "h".into(),
            doc: String::new(),
        }
    }

    fn compile(routes: &[Route]) -> Result<Vec<CompiledRoute>, RouteError> {
        super::compile(routes, &RoutingConfig::default())
    }

    fn one(kind: RouteKind, pattern: &str) -> CompiledRoute {
        compile(&[route(kind, pattern)]).unwrap().remove(0)
    }

    fn args(caps: Vec<Capture>) -> Vec<(String, Option<String>)> {
        caps.into_iter().map(|c| (c.name, c.value)).collect()
    }

    #[test]
    fn named_groups_become_arguments() {
        let r = one(
            RouteKind::RespondTo,
            r"store (?P<text>.*) under (?P<key>\w+)",
        );
        let caps = r
            .matches(&Incoming::addressed("store hello world under greeting"))
            .unwrap();
        assert_eq!(
            args(caps),
            [
                ("text".into(), Some("hello world".into())),
                ("key".into(), Some("greeting".into()))
            ]
        );
    }

    #[test]
    fn search_is_unanchored_and_case_insensitive() {
        let r = one(RouteKind::RespondTo, "size");
        assert!(r.matches(&Incoming::addressed("what SIZE is it")).is_some());
        let exact = compile(&[Route {
            ignore_case: false,
            ..route(RouteKind::RespondTo, "size")
        }])
        .unwrap();
        assert!(exact[0].matches(&Incoming::addressed("SIZE")).is_none());
    }

    #[test]
    fn respond_to_needs_an_addressed_message() {
        let respond = one(RouteKind::RespondTo, "hello");
        let listen = one(RouteKind::ListenTo, "hello");
        assert!(respond.matches(&Incoming::overheard("hello")).is_none());
        assert!(listen.matches(&Incoming::overheard("hello")).is_some());
        assert!(listen.matches(&Incoming::addressed("hello")).is_some());
    }

    #[test]
    fn unmatched_optional_groups_are_none() {
        let r = one(
            RouteKind::RespondTo,
            r"^(?P<shared>shared )?get (?P<key>\S+)$",
        );
        let caps = r.matches(&Incoming::addressed("get k")).unwrap();
        assert_eq!(
            args(caps),
            [("shared".into(), None), ("key".into(), Some("k".into()))]
        );
    }

    #[test]
    fn bad_patterns_name_the_route() {
        let e = compile(&[
            route(RouteKind::ListenTo, "ok"),
            route(RouteKind::ListenTo, "(unclosed"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("route 1") && e.contains("(unclosed"), "{e}");
        let many = vec![route(RouteKind::ListenTo, "x"); MAX_ROUTES + 1];
        assert!(matches!(compile(&many), Err(RouteError::TooMany(_))));
        let huge = "a{1000}{1000}";
        let e = compile(&[route(RouteKind::ListenTo, huge)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("too complex") && e.contains("1024 KiB"), "{e}");
    }

    #[test]
    fn syntax_errors_point_at_the_fault() {
        let e = compile(&[route(RouteKind::ListenTo, r"get (?P<key>\S+")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unclosed group"), "{e}");
    }

    #[test]
    fn a_table_runs_listen_to_routes_first_and_reuses_its_caches() {
        let a = compile(&[
            route(RouteKind::RespondTo, r"^hello (?P<who>\w+)"),
            route(RouteKind::ListenTo, "hello"),
        ])
        .unwrap();
        let b = compile(&[
            route(RouteKind::ListenTo, "HELLO"),
            route(RouteKind::RespondTo, "bye"),
            route(RouteKind::RespondTo, r"(?P<all>.*)"),
        ])
        .unwrap();
        let plugins = [a.as_slice(), b.as_slice()];
        let table = Routes::new(plugins);
        let found = |msg: &Incoming| {
            table
                .matching(|p| plugins[p], msg)
                .into_iter()
                .map(|(p, route, caps)| (p, route.index, args(caps)))
                .collect::<Vec<_>>()
        };
        let addressed = Incoming::addressed("hello world");
        let expected = [
            (0, 1, vec![]),
            (1, 0, vec![]),
            (0, 0, vec![("who".into(), Some("world".into()))]),
            (1, 2, vec![("all".into(), Some("hello world".into()))]),
        ];
        // The second round runs on the caches the first one left.
        for _ in 0..2 {
            assert_eq!(found(&addressed), expected);
        }
        assert_eq!(
            found(&Incoming::overheard("hello world")),
            [(0, 1, vec![]), (1, 0, vec![])]
        );
        assert_eq!(
            found(&Incoming::addressed("bye")),
            [
                (1, 1, vec![]),
                (1, 2, vec![("all".into(), Some("bye".into()))])
            ]
        );
        // Each route's result is the same as matching it alone.
        for msg in [
            addressed,
            Incoming::overheard("bye"),
            Incoming::addressed(""),
        ] {
            let alone: Vec<_> = [0, 1]
                .into_iter()
                .flat_map(|p| plugins[p].iter().map(move |r| (p, r)))
                .filter_map(|(p, r)| r.matches(&msg).map(|c| (p, r.index, args(c))))
                .collect();
            let mut via_table = found(&msg);
            via_table.sort_by_key(|(p, i, _)| (*p, *i));
            let mut alone = alone;
            alone.sort_by_key(|(p, i, _)| (*p, *i));
            assert_eq!(via_table, alone, "{msg:?}");
        }
    }

    /// Routes as real plugins declare them.
    fn ordinary() -> Vec<Route> {
        [
            r"^store (?P<value>.+) under (?P<key>.+)$",
            r"^retrieve (?P<key>.+)$",
            r"^does (?P<key>.+) exist\?$",
            r"(?P<name>\w+)\+\+",
            r"^karma (?P<name>\w+)$",
            r"\bhello\b",
        ]
        .into_iter()
        .map(|p| route(RouteKind::RespondTo, p))
        .collect()
    }

    #[test]
    fn ordinary_plugins_fit_their_budgets() {
        let limits = RoutingConfig::default();
        // Each route twice in one plugin.
        let twice: Vec<Route> = ordinary().into_iter().cycle().take(12).collect();
        let routes = super::compile(&twice, &limits).unwrap();
        let cost: usize = routes.iter().map(CompiledRoute::cost).sum();
        assert!(cost < limits.max_plugin_route_bytes, "{cost}");
        // Fifty plugins of these routes fit a host.
        let plugin: usize = super::compile(&ordinary(), &limits)
            .unwrap()
            .iter()
            .map(CompiledRoute::cost)
            .sum();
        assert!(plugin * 50 < limits.max_host_route_bytes, "{plugin}");
    }

    #[test]
    fn routes_over_their_budget_are_refused_naming_the_worst() {
        let limits = RoutingConfig::default();
        // The attack: 256 routes with Unicode word boundaries and a large
        // counted repetition, each inside the per-route caps.
        let attack: Vec<Route> = (0..MAX_ROUTES)
            .map(|i| Route {
                handler: format!("heavy{i}"),
                ..route(RouteKind::ListenTo, &format!(r"\b(?s:.){{0,1000}}\bq1z{i}"))
            })
            .collect();
        let e = super::compile(&attack, &limits).unwrap_err();
        let RouteError::PluginBudget {
            total,
            limit,
            ref handler,
            ..
        } = e
        else {
            panic!("{e}");
        };
        assert!(total > limit && limit == limits.max_plugin_route_bytes);
        assert!(handler.starts_with("heavy"), "{handler}");
        let text = e.to_string();
        assert!(
            text.contains("[routing] max_plugin_route_bytes") && text.contains("(heavy"),
            "{text}"
        );

        // The host's budget counts the plugins loaded already.
        let small = RoutingConfig {
            max_plugin_route_bytes: 1 << 20,
            max_host_route_bytes: 1 << 20,
            ..limits
        };
        let routes = super::compile(&ordinary(), &small).unwrap();
        let cost: usize = routes.iter().map(CompiledRoute::cost).sum();
        assert!(check_host_budget(0, &routes, &small).is_ok());
        assert!(check_host_budget((1 << 20) - cost, &routes, &small).is_ok());
        let e = check_host_budget((1 << 20) - cost + 1, &routes, &small).unwrap_err();
        assert!(matches!(e, RouteError::HostBudget { .. }), "{e}");
        assert!(
            e.to_string().contains("[routing] max_host_route_bytes"),
            "{e}"
        );
        // A plugin without routes always fits.
        assert!(check_host_budget(usize::MAX, &[], &small).is_ok());
    }

    /// What the regex engine's all-purpose regex, compiled
    /// case-insensitively, finds in `text`, as arguments.
    fn reference(
        regex: &regex_automata::meta::Regex,
        text: &str,
    ) -> Option<Vec<(String, Option<String>)>> {
        let mut caps = regex.create_captures();
        regex.captures(text, &mut caps);
        caps.is_match().then(|| {
            regex
                .group_info()
                .pattern_names(PatternID::ZERO)
                .enumerate()
                .filter_map(|(i, name)| {
                    name.map(|name| {
                        (
                            name.to_owned(),
                            caps.get_group(i).map(|s| text[s.range()].to_owned()),
                        )
                    })
                })
                .collect()
        })
    }

    /// Each of [`PATTERNS`] as a route and as the reference regex.
    static COMPILED: std::sync::LazyLock<Vec<(CompiledRoute, regex_automata::meta::Regex)>> =
        std::sync::LazyLock::new(|| {
            PATTERNS
                .iter()
                .map(|pattern| {
                    let regex = regex_automata::meta::Regex::builder()
                        .syntax(regex_automata::util::syntax::Config::new().case_insensitive(true))
                        .build(pattern)
                        .unwrap();
                    (one(RouteKind::ListenTo, pattern), regex)
                })
                .collect()
        });

    const PATTERNS: [&str; 9] = [
        r"^store (?P<value>.+) under (?P<key>.+)$",
        r"(?P<name>\w+)\+\+",
        r"\bcafé\b",
        r"\b(?P<word>\w+)\b$",
        r"(?P<a>a+)(?P<b>b)?",
        r"(?:x|(?P<y>y))*z",
        r"^$",
        r"hello",
        // Its DFA has 2^16 states: the lazy DFA gives up on long random
        // texts.
        r"(?P<tail>a(?s:.){16})$",
    ];

    /// Texts each of [`PATTERNS`] is tried on, besides a long one.
    const TEXTS: [&str; 9] = [
        "store x under y",
        "STORE Kaffee UNDER café",
        "un café noir",
        "un cafébar",
        "bob++ and alice++",
        "éé aab",
        "xyxz",
        "",
        "Hello there",
    ];

    /// 8,000 letters a and b, at random from `seed`: the DFA of the last
    /// of [`PATTERNS`] has 2^16 states on such a text, more than a lazy
    /// DFA's cache holds.
    fn random_ab(mut seed: u32) -> String {
        (0..8000)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if seed >> 16 & 1 == 0 { 'a' } else { 'b' }
            })
            .collect()
    }

    #[test]
    fn matches_agree_with_the_regex_engine_where_the_lazy_dfa_gives_up() {
        let long = random_ab(1);
        let texts: Vec<&str> = TEXTS.into_iter().chain([long.as_str()]).collect();
        for (route, regex) in COMPILED.iter() {
            for &text in &texts {
                let ours = route.matches(&Incoming::overheard(text)).map(args);
                let pattern = route.pattern();
                assert_eq!(ours, reference(regex, text), "{pattern:?} on {text:?}");
            }
        }
        // The lazy DFA gave up on a Unicode word boundary in non-ASCII
        // text, and on the long text, so the PikeVM decided above.
        for (pattern, text) in [(r"\bcafé\b", "un café noir"), (PATTERNS[8], &long)] {
            let route = one(RouteKind::ListenTo, pattern);
            let mut cache = route.matcher.create_cache();
            let dfa = route.matcher.dfa.as_ref().unwrap();
            let input = Input::new(text).earliest(true);
            let gave_up = dfa.try_search_fwd(cache.dfa.as_mut().unwrap(), &input);
            assert!(gave_up.is_err(), "{pattern:?}: {gave_up:?}");
        }
    }

    /// Groups are found by the bounded backtracker on texts up to its
    /// limit and by the PikeVM beyond it: the same matches and groups on
    /// either side, padded in front or behind.
    #[test]
    fn groups_agree_either_side_of_the_backtrackers_limit() {
        for (route, regex) in COMPILED.iter() {
            let pattern = route.pattern();
            let backtrack = &route.matcher.backtrack;
            let max = route.matcher.backtrack_max_len;
            // Room for a command, even for an automaton with a Unicode `\w`.
            assert!(max >= 80, "{pattern:?}: {max}");
            let mut cache = backtrack.create_cache();
            let mut caps = backtrack.create_captures();
            for text in TEXTS {
                for len in [max, max + 1] {
                    let pad = " ".repeat(len - text.len());
                    for padded in [format!("{pad}{text}"), format!("{text}{pad}")] {
                        let ours = route.matches(&Incoming::overheard(&padded)).map(args);
                        assert_eq!(ours, reference(regex, &padded), "{pattern:?} on {padded:?}");
                        // Within the limit, the backtracker searches.
                        if len == max {
                            let input = Input::new(&padded);
                            let searched = backtrack.try_search(&mut cache, &input, &mut caps);
                            assert!(searched.is_ok(), "{pattern:?}: {searched:?}");
                        }
                    }
                }
            }
        }
    }

    /// A route whose automaton branches much is searched by the
    /// backtracker only on shorter texts, which bound its stack: the
    /// groups agree with the regex engine's either side of that limit.
    #[test]
    fn many_branches_shorten_what_the_backtracker_searches() {
        let pattern = r"(?P<letters>(?:a|b|c|d|e|f|g|h|i|j|k|l)*)z";
        let route = one(RouteKind::ListenTo, pattern);
        let regex = regex_automata::meta::Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().case_insensitive(true))
            .build(pattern)
            .unwrap();
        let matcher = &route.matcher;
        let max = matcher.backtrack_max_len;
        assert!(max < matcher.backtrack.max_haystack_len() / 4, "{max}");
        assert!(max > 40, "{max}");
        for len in [max, max + 1] {
            for text in [
                "a".repeat(len - 1) + "z",
                "ab".repeat(len / 2 + 1)[..len].to_owned(),
            ] {
                let ours = route.matches(&Incoming::overheard(&text)).map(args);
                assert_eq!(ours, reference(&regex, &text), "{text:?}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn random_texts_match_as_with_the_regex_engine(text in "[abxyz+é _]{0,40}") {
            for (route, regex) in COMPILED.iter() {
                let ours = route.matches(&Incoming::overheard(text.as_str())).map(args);
                proptest::prop_assert_eq!(ours, reference(regex, &text), "{:?}", route.pattern());
            }
        }
    }

    /// [`PATTERNS`] as the routes of two plugins, each pattern once as a
    /// listen-to and once as a respond-to route.
    fn pattern_plugins() -> [Vec<CompiledRoute>; 2] {
        let routes = |kind| PATTERNS.map(|p| route(kind, p));
        [
            compile(&routes(RouteKind::ListenTo)).unwrap(),
            compile(&routes(RouteKind::RespondTo)).unwrap(),
        ]
    }

    /// A match: plugin position, route index and arguments.
    type Found = (usize, u32, Vec<(String, Option<String>)>);

    /// What the table finds in `msg`, against each route matched alone.
    fn table_and_alone(
        table: &Routes,
        plugins: &[Vec<CompiledRoute>],
        msg: &Incoming,
    ) -> (Vec<Found>, Vec<Found>) {
        let via_table = table
            .matching(|p| &plugins[p], msg)
            .into_iter()
            .map(|(p, route, caps)| (p, route.index, args(caps)))
            .collect();
        // Listen-to routes first, then respond-to, as the table runs them.
        let alone = [RouteKind::ListenTo, RouteKind::RespondTo]
            .into_iter()
            .flat_map(|kind| {
                plugins.iter().enumerate().flat_map(move |(p, routes)| {
                    routes
                        .iter()
                        .filter(move |r| r.kind == kind)
                        .map(move |r| (p, r))
                })
            })
            .filter_map(|(p, r)| r.matches(msg).map(|c| (p, r.index, args(c))))
            .collect();
        (via_table, alone)
    }

    #[test]
    fn route_sets_find_what_each_route_finds_alone() {
        let plugins = pattern_plugins();
        let table = Routes::new(plugins.iter().map(Vec::as_slice));
        // Every route but the Unicode word boundaries' is in a set: per
        // kind, one of the anchored ones and one of the others.
        let sets = table.sets.get().expect("built");
        assert_eq!(sets.sets.len(), 4, "{:?}", sets.sets);
        let unicode_words = PATTERNS.iter().filter(|p| p.contains(r"\b")).count();
        let outside = sets.in_set.iter().filter(|s| s.is_none()).count();
        assert_eq!(outside, 2 * unicode_words);
        let long = "ab".repeat(4000);
        for text in TEXTS.into_iter().chain([long.as_str()]) {
            for msg in [Incoming::addressed(text), Incoming::overheard(text)] {
                let (via_table, alone) = table_and_alone(&table, &plugins, &msg);
                assert_eq!(via_table, alone, "{msg:?}");
            }
        }
    }

    #[test]
    fn a_deferred_table_matches_the_same_before_and_after_its_sets_are_built() {
        let plugins = pattern_plugins();
        let table = Routes::deferred(plugins.iter().map(Vec::as_slice));
        assert!(table.sets.get().is_none());
        let texts = [
            "store x under y",
            "bob++ and alice++",
            "éé aab",
            "",
            "Hello",
        ];
        let matched = |table: &Routes| {
            texts
                .iter()
                .map(|text| table_and_alone(table, &plugins, &Incoming::addressed(*text)))
                .collect::<Vec<_>>()
        };
        let before = matched(&table);
        table.build_sets();
        assert_eq!(table.sets.get().expect("built").sets.len(), 4);
        let after = matched(&table);
        for ((via_table, alone), (via_sets, _)) in before.iter().zip(&after) {
            assert_eq!(via_table, alone);
            assert_eq!(via_sets, alone);
        }
        // The search caches of earlier messages gain the sets' caches.
        assert_eq!(table.caches.get().sets.len(), 4);
    }

    #[test]
    fn a_set_that_gives_up_leaves_its_routes_to_be_searched_alone() {
        let plugins = pattern_plugins();
        let table = Routes::new(plugins.iter().map(Vec::as_slice));
        let msg = Incoming::addressed(random_ab(7));
        let gave_up = table
            .sets
            .get()
            .expect("built")
            .sets
            .iter()
            .map(|set| set.search(&mut set.create_cache(), &msg))
            .filter(|searched| !searched)
            .count();
        assert!(gave_up > 0, "no set gave up");
        let (via_table, alone) = table_and_alone(&table, &plugins, &msg);
        assert!(via_table.iter().any(|(_, r, _)| *r == 8), "{via_table:?}");
        assert_eq!(via_table, alone);
    }

    #[test]
    fn routes_beyond_what_a_set_holds_form_further_sets_up_to_the_limit() {
        // Case-insensitive Unicode word classes: tens of KiB of automaton
        // a route, so that a few hundred routes fill several sets.
        let plugins: Vec<Vec<CompiledRoute>> = (0..150)
            .map(|p| {
                let routes: Vec<Route> = (0..10)
                    .map(|r| route(RouteKind::ListenTo, &format!(r"\w+ p{p}r{r} (?P<v>\w+)")))
                    .collect();
                compile(&routes).unwrap()
            })
            .collect();
        let table = Routes::new(plugins.iter().map(Vec::as_slice));
        let route_bytes: usize = plugins
            .iter()
            .flatten()
            .map(|r| r.matcher.pikevm.get_nfa().memory_usage())
            .sum();
        // More than the sets may hold together: the last routes are
        // searched alone.
        assert!(
            route_bytes > (MAX_SETS + 1) * MAX_SET_ROUTE_BYTES,
            "{route_bytes}"
        );
        let sets = table.sets.get().expect("built");
        assert_eq!(sets.sets.len(), MAX_SETS);
        assert!(sets.in_set[0].is_some());
        assert!(sets.in_set.last().unwrap().is_none());
        // Each set holds at most what one may.
        for set in 0..sets.sets.len() {
            let bytes: usize = table
                .order
                .iter()
                .zip(&sets.in_set)
                .filter(|(_, s)| s.is_some_and(|(s, _)| s == set))
                .map(|(&(p, r), _)| plugins[p][r].matcher.pikevm.get_nfa().memory_usage())
                .sum();
            assert!(bytes <= MAX_SET_ROUTE_BYTES, "set {set}: {bytes}");
        }
        for text in ["élan p7r3 vital", "x p149r9 y", "p1r1", "a p150r1 b"] {
            let msg = Incoming::overheard(text);
            let (via_table, alone) = table_and_alone(&table, &plugins, &msg);
            assert_eq!(via_table, alone, "{msg:?}");
        }
        for text in ["élan p7r3 vital", "x p149r9 y"] {
            let msg = Incoming::overheard(text);
            let (via_table, _) = table_and_alone(&table, &plugins, &msg);
            assert_eq!(via_table.len(), 1, "{msg:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn random_texts_match_as_alone_through_route_sets(text in "[abxyz+é _]{0,40}", addressed: bool) {
            static TABLE: std::sync::LazyLock<([Vec<CompiledRoute>; 2], Routes)> =
                std::sync::LazyLock::new(|| {
                    let plugins = pattern_plugins();
                    let table = Routes::new(plugins.iter().map(Vec::as_slice));
                    (plugins, table)
                });
            let (plugins, table) = &*TABLE;
            let msg = Incoming { addressed, ..Incoming::overheard(text) };
            let (via_table, alone) = table_and_alone(table, plugins, &msg);
            proptest::prop_assert_eq!(via_table, alone);
        }
    }

    #[test]
    fn matching_by_position_agrees_with_matching_by_reference() {
        let a = compile(&ordinary()).unwrap();
        let b = compile(&ordinary()[2..]).unwrap();
        let plugins = [a.as_slice(), b.as_slice()];
        let table = Routes::new(plugins);
        for text in ["store x under y", "bob++ hello", "does k exist?", "nothing"] {
            let msg = Incoming::addressed(text);
            let by_ref: Vec<_> = table
                .matching(|p| plugins[p], &msg)
                .into_iter()
                .map(|(p, route, caps)| (p, route.index as usize, args(caps)))
                .collect();
            let by_index: Vec<_> = table
                .matching_indices(|p| plugins[p], &msg)
                .into_iter()
                .map(|(p, r, caps)| (p, r, args(caps)))
                .collect();
            assert_eq!(by_ref, by_index, "{text}");
        }
    }
}
