//! The live scope: the set of cgroups the sensors watch, in a kernel map that can change while
//! the programs run. A task is in scope when its cgroup or an ancestor is in the set, so a
//! build's own sub-cgroups are watched with it. `run` puts its one cgroup here before the
//! command starts; the agent adds and removes cgroups as they come and go.

use std::collections::BTreeMap;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use monitor_common::{SCOPE_ALL, SCOPE_MAX_CGROUPS, SCOPE_MAX_LEVEL};

use crate::kernel::loader::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cgroup level {0} is deeper than the {SCOPE_MAX_LEVEL} levels the sensors look at")]
    TooDeep(u32),
    #[error("at most {SCOPE_MAX_CGROUPS} cgroups can be watched at once")]
    Full,
    #[error("updating the scope map: {0}")]
    Map(#[from] aya::maps::MapError),
}

pub struct ScopeMap {
    ids: HashMap<MapData, u64, u8>,
    levels: Array<MapData, u64>,
    /// Watched cgroup id → its level; and how many watched cgroups sit at each level.
    watched: BTreeMap<u64, u32>,
    per_level: [u32; SCOPE_MAX_LEVEL as usize],
    all: bool,
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
            per_level: [0; SCOPE_MAX_LEVEL as usize],
            all: false,
        })
    }

    /// Watch cgroup `id` (at `level` below the v2 root) and everything below it.
    pub fn add(&mut self, id: u64, level: u32) -> Result<(), ScopeError> {
        if level >= SCOPE_MAX_LEVEL {
            return Err(ScopeError::TooDeep(level));
        }
        if self.watched.contains_key(&id) {
            return Ok(());
        }
        if self.watched.len() >= SCOPE_MAX_CGROUPS as usize {
            return Err(ScopeError::Full);
        }
        // The id goes in before its level is switched on: a program that sees the level
        // finds the id.
        self.ids.insert(&id, &1, 0)?;
        self.watched.insert(id, level);
        self.per_level[level as usize] += 1;
        self.publish_levels()
    }

    /// Stop watching cgroup `id`.
    pub fn remove(&mut self, id: u64) -> Result<(), ScopeError> {
        let Some(level) = self.watched.remove(&id) else {
            return Ok(());
        };
        self.per_level[level as usize] -= 1;
        self.publish_levels()?;
        self.ids.remove(&id)?;
        Ok(())
    }

    /// Watch every task on the host (or stop doing so).
    pub fn set_all(&mut self, all: bool) -> Result<(), ScopeError> {
        self.all = all;
        self.publish_levels()
    }

    /// The watched cgroup ids.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.watched.keys().copied()
    }

    fn publish_levels(&mut self) -> Result<(), ScopeError> {
        let mut bits = if self.all { SCOPE_ALL } else { 0 };
        for (level, n) in self.per_level.iter().enumerate() {
            if *n > 0 {
                bits |= 1 << level;
            }
        }
        self.levels.set(0, &bits, 0)?;
        Ok(())
    }
}
