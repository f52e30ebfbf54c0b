//! The live scope: the set of cgroups the sensors watch, in a kernel map that can change while
//! the programs run. A task is in scope when its cgroup or an ancestor is in the set, so a
//! build's own sub-cgroups are watched with it. `run` puts its one cgroup here before the
//! command starts; the agent adds and removes cgroups as they come and go.

use std::collections::BTreeMap;

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap, MapData},
};
use monitor_common::{SCOPE_MAX_CGROUPS, SCOPE_MAX_LEVELS, ScopeLevels};

use crate::kernel::loader::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "the watched cgroups would sit at more than {SCOPE_MAX_LEVELS} different depths \
         (adding one at level {0})"
    )]
    TooManyLevels(u32),
    #[error("at most {SCOPE_MAX_CGROUPS} cgroups can be watched at once")]
    Full,
    #[error("updating the scope map: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// The map's value as aya writes it (plain data: integers and an array of them).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Levels(ScopeLevels);

// SAFETY: repr(C) integers only, no padding (size asserted in monitor-common).
unsafe impl Pod for Levels {}

pub struct ScopeMap {
    ids: HashMap<MapData, u64, u8>,
    levels: Array<MapData, Levels>,
    /// Watched cgroup id → its level; and how many watched cgroups sit at each level.
    watched: BTreeMap<u64, u32>,
    per_level: BTreeMap<u32, u32>,
    all: bool,
    ignore_tgid: u32,
    agent: bool,
}

impl ScopeMap {
    pub(crate) fn new(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
        };
        let map_err = |name: &'static str| move |source| LoadError::Map { name, source };
        Ok(Self {
            ids: HashMap::try_from(take(ebpf, "SCOPE")?).map_err(map_err("SCOPE"))?,
            levels: Array::try_from(take(ebpf, "SCOPE_LEVELS")?)
                .map_err(map_err("SCOPE_LEVELS"))?,
            watched: BTreeMap::new(),
            per_level: BTreeMap::new(),
            all: false,
            ignore_tgid: 0,
            agent: false,
        })
    }

    /// Watch cgroup `id` (at `level` below the v2 root) and everything below it.
    pub fn add(&mut self, id: u64, level: u32) -> Result<(), ScopeError> {
        if self.watched.contains_key(&id) {
            return Ok(());
        }
        if self.watched.len() >= SCOPE_MAX_CGROUPS as usize {
            return Err(ScopeError::Full);
        }
        if !self.per_level.contains_key(&level) && self.per_level.len() >= SCOPE_MAX_LEVELS {
            return Err(ScopeError::TooManyLevels(level));
        }
        // The id goes in before its level is looked at: a program that looks finds it.
        self.ids.insert(&id, &1, 0)?;
        self.watched.insert(id, level);
        *self.per_level.entry(level).or_default() += 1;
        self.publish_levels()
    }

    /// Stop watching cgroup `id`.
    pub fn remove(&mut self, id: u64) -> Result<(), ScopeError> {
        let Some(level) = self.watched.remove(&id) else {
            return Ok(());
        };
        if let Some(n) = self.per_level.get_mut(&level) {
            *n -= 1;
            if *n == 0 {
                self.per_level.remove(&level);
            }
        }
        self.publish_levels()?;
        self.ids.remove(&id)?;
        Ok(())
    }

    /// Watch every task on the host (or stop doing so).
    pub fn set_all(&mut self, all: bool) -> Result<(), ScopeError> {
        self.all = all;
        self.publish_levels()
    }

    /// The host agent's scope: never watch process `tgid` (the agent itself), whatever its
    /// cgroup; follow no process by lineage and kill nothing that leaves the watched cgroups
    /// (see [`ScopeLevels::agent`]).
    pub fn agent(&mut self, tgid: u32) -> Result<(), ScopeError> {
        self.ignore_tgid = tgid;
        self.agent = true;
        self.publish_levels()
    }

    /// The watched cgroup ids.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.watched.keys().copied()
    }

    fn publish_levels(&mut self) -> Result<(), ScopeError> {
        let mut v = ScopeLevels {
            all: u32::from(self.all),
            count: self.per_level.len() as u32,
            levels: [0; SCOPE_MAX_LEVELS],
            ignore_tgid: self.ignore_tgid,
            agent: u32::from(self.agent),
        };
        for (slot, level) in v.levels.iter_mut().zip(self.per_level.keys()) {
            *slot = *level;
        }
        self.levels.set(0, &Levels(v), 0)?;
        Ok(())
    }
}
