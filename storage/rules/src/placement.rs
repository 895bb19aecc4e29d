//! Placement: which cell an UNCLAIMED instance or a QUEUED task run goes to. Fit (memory, disk,
//! containers, and the rootfs provider for an instance or the pool for a run), then spread (fewest
//! of the same process — or of the same task definition — in the zone, then on the cell), then the
//! most free memory, then the cell id — deterministic for the same input.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pb;

pub const ERR_NO_COMPATIBLE_CELLS: &str = "found no compatible cells";
pub const ERR_INSUFFICIENT_RESOURCES: &str = "insufficient resources";

/// A cell and what is already placed on it.
#[derive(Debug, Clone)]
pub struct CellLoad {
    pub cell: pb::Cell,
    pub used_memory_mb: i64,
    pub used_disk_mb: i64,
    pub used_containers: i64,
    /// instances per process_guid on this cell (the guid shared with the caller's maps when it
    /// counts through [`CellLoad::add_shared`])
    pub per_process: BTreeMap<Arc<str>, u32>,
}

impl CellLoad {
    pub fn new(cell: pb::Cell) -> Self {
        Self {
            cell,
            used_memory_mb: 0,
            used_disk_mb: 0,
            used_containers: 0,
            per_process: BTreeMap::new(),
        }
    }

    /// Counts one more instance of `process_guid` needing these resources on this cell.
    pub fn add(&mut self, process_guid: &str, memory_mb: i32, disk_mb: i32) {
        self.add_with(process_guid, || Arc::from(process_guid), memory_mb, disk_mb);
    }

    /// [`CellLoad::add`] keeping the caller's copy of the guid rather than allocating one.
    pub fn add_shared(&mut self, process_guid: &Arc<str>, memory_mb: i32, disk_mb: i32) {
        self.add_with(process_guid, || process_guid.clone(), memory_mb, disk_mb);
    }

    fn add_with(&mut self, process_guid: &str, key: impl FnOnce() -> Arc<str>, memory_mb: i32, disk_mb: i32) {
        self.used_memory_mb += i64::from(memory_mb.max(0));
        self.used_disk_mb += i64::from(disk_mb.max(0));
        self.used_containers += 1;
        match self.per_process.get_mut(process_guid) {
            Some(n) => *n += 1,
            None => {
                self.per_process.insert(key(), 1);
            }
        }
    }

    /// Counts one instance of `process_guid` off this cell again.
    pub fn remove(&mut self, process_guid: &str, memory_mb: i32, disk_mb: i32) {
        self.used_memory_mb -= i64::from(memory_mb.max(0));
        self.used_disk_mb -= i64::from(disk_mb.max(0));
        self.used_containers -= 1;
        if let Some(n) = self.per_process.get_mut(process_guid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_process.remove(process_guid);
            }
        }
    }

    fn capacity(&self) -> pb::CellCapacity {
        self.cell.capacity.unwrap_or_default()
    }

    fn free_memory_mb(&self) -> i64 {
        i64::from(self.capacity().memory_mb) - self.used_memory_mb
    }

    fn fits(&self, memory_mb: i32, disk_mb: i32) -> bool {
        let cap = self.capacity();
        self.free_memory_mb() >= i64::from(memory_mb.max(0))
            && i64::from(cap.disk_mb) - self.used_disk_mb >= i64::from(disk_mb.max(0))
            && i64::from(cap.containers) - self.used_containers >= 1
    }
}

/// Whether a cell offers the rootfs: `preloaded:<stack>` for a stack it has, `docker://…` when
/// it runs docker.
pub fn provides_rootfs(cell: &pb::Cell, rootfs: &str) -> bool {
    match rootfs.split_once(':') {
        Some(("preloaded", stack)) => cell.preloaded_stacks.iter().any(|s| s == stack),
        Some(("docker", _)) => cell.docker,
        _ => false,
    }
}

/// Which cells can take the work at all.
#[derive(Debug, Clone, Copy)]
pub enum Requires<'a> {
    /// An LRP instance: cells that provide this rootfs.
    Rootfs(&'a str),
    /// A task run: cells of this pool (Flotilla cluster); any of them runs any image.
    Pool(&'a str),
}

impl Requires<'_> {
    pub fn offered_by(self, cell: &pb::Cell) -> bool {
        match self {
            Requires::Rootfs(rootfs) => provides_rootfs(cell, rootfs),
            Requires::Pool(pool) => cell.pool == pool,
        }
    }
}

/// What one instance (or run) needs. `process_guid` is what spread counts: the process of an
/// instance, the definition of a run.
#[derive(Debug, Clone)]
pub struct Need<'a> {
    pub process_guid: &'a str,
    pub requires: Requires<'a>,
    pub memory_mb: i32,
    pub disk_mb: i32,
}

/// Picks the cell for `need` among `cells` and records it there; returns the cell's position,
/// or the placement error Diego would report.
pub fn place(cells: &mut [CellLoad], need: &Need<'_>) -> Result<usize, &'static str> {
    ProcessPlacer::new(cells, need.clone()).place(cells)
}

/// Places many instances of one process: what does not change between them (rootfs
/// compatibility, zone of each cell, the process's counts) is computed once, so each placement
/// is a scan of integers over the cells.
pub struct ProcessPlacer<'a> {
    need: Need<'a>,
    compatible: Vec<bool>,
    any_compatible: bool,
    /// instances of this process on each cell
    counts: Vec<u32>,
    /// each cell's zone, as an index into `zone_counts`
    zone_of: Vec<usize>,
    /// instances of this process in each zone
    zone_counts: Vec<u32>,
}

impl<'a> ProcessPlacer<'a> {
    pub fn new(cells: &[CellLoad], need: Need<'a>) -> Self {
        let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
        let mut zone_of = Vec::with_capacity(cells.len());
        let mut zone_counts: Vec<u32> = Vec::new();
        let mut counts = Vec::with_capacity(cells.len());
        let mut compatible = Vec::with_capacity(cells.len());
        for c in cells {
            let next = zones.len();
            let z = *zones.entry(c.cell.zone.as_str()).or_insert(next);
            if z == zone_counts.len() {
                zone_counts.push(0);
            }
            let n = c.per_process.get(need.process_guid).copied().unwrap_or(0);
            zone_counts[z] += n;
            zone_of.push(z);
            counts.push(n);
            compatible.push(need.requires.offered_by(&c.cell));
        }
        let any_compatible = compatible.iter().any(|c| *c);
        Self {
            need,
            compatible,
            any_compatible,
            counts,
            zone_of,
            zone_counts,
        }
    }

    /// Places one more instance; `cells` must be the slice this placer was built from.
    pub fn place(&mut self, cells: &mut [CellLoad]) -> Result<usize, &'static str> {
        if !self.any_compatible {
            return Err(ERR_NO_COMPATIBLE_CELLS);
        }
        let mut best: Option<usize> = None;
        for i in 0..cells.len().min(self.compatible.len()) {
            if !self.compatible[i] || !cells[i].fits(self.need.memory_mb, self.need.disk_mb) {
                continue;
            }
            best = Some(match best {
                None => i,
                Some(b) => {
                    let key = |j: usize| (self.zone_counts[self.zone_of[j]], self.counts[j]);
                    let order = key(i)
                        .cmp(&key(b))
                        .then(cells[b].free_memory_mb().cmp(&cells[i].free_memory_mb()))
                        .then_with(|| cells[i].cell.cell_id.cmp(&cells[b].cell.cell_id));
                    if order == std::cmp::Ordering::Less {
                        i
                    } else {
                        b
                    }
                }
            });
        }
        let best = best.ok_or(ERR_INSUFFICIENT_RESOURCES)?;
        cells[best].add(self.need.process_guid, self.need.memory_mb, self.need.disk_mb);
        self.counts[best] += 1;
        self.zone_counts[self.zone_of[best]] += 1;
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(id: &str, zone: &str, memory_mb: i32, containers: i32) -> CellLoad {
        CellLoad::new(pb::Cell {
            cell_id: id.into(),
            zone: zone.into(),
            capacity: Some(pb::CellCapacity {
                memory_mb,
                disk_mb: 10_000,
                containers,
            }),
            preloaded_stacks: vec!["cflinuxfs4".into()],
            ..Default::default()
        })
    }

    fn need(guid: &str, memory_mb: i32) -> Need<'_> {
        Need {
            process_guid: guid,
            requires: Requires::Rootfs("preloaded:cflinuxfs4"),
            memory_mb,
            disk_mb: 0,
        }
    }

    fn ids(cells: &[CellLoad], picks: &[usize]) -> Vec<String> {
        picks.iter().map(|&i| cells[i].cell.cell_id.clone()).collect()
    }

    #[test]
    fn spreads_across_zones_then_cells() {
        let mut cells = vec![
            cell("a1", "z1", 1000, 10),
            cell("a2", "z1", 1000, 10),
            cell("b1", "z2", 1000, 10),
        ];
        let picks: Vec<usize> = (0..4)
            .map(|_| place(&mut cells, &need("web", 100)).expect("fits"))
            .collect();
        // zone first: z1 and z2 alternate; within z1 the two cells alternate
        assert_eq!(ids(&cells, &picks), vec!["a1", "b1", "a2", "b1"]);
    }

    #[test]
    fn deterministic_tie_break_and_free_memory() {
        let mut cells = vec![cell("c2", "z", 1000, 10), cell("c1", "z", 1000, 10)];
        let pick = place(&mut cells, &need("x", 0)).expect("fits");
        assert_eq!(ids(&cells, &[pick]), vec!["c1"]);
        let mut cells = vec![cell("small", "z", 500, 10), cell("big", "z", 2000, 10)];
        let pick = place(&mut cells, &need("y", 100)).expect("fits");
        assert_eq!(ids(&cells, &[pick]), vec!["big"]);
    }

    #[test]
    fn fit_and_placement_errors() {
        let mut cells = vec![cell("a", "z", 256, 2)];
        assert_eq!(place(&mut cells, &need("x", 512)), Err(ERR_INSUFFICIENT_RESOURCES));
        assert!(place(&mut cells, &need("x", 128)).is_ok());
        assert!(place(&mut cells, &need("x", 128)).is_ok());
        assert_eq!(
            place(&mut cells, &need("x", 0)),
            Err(ERR_INSUFFICIENT_RESOURCES),
            "containers exhausted"
        );
        let docker = Need {
            requires: Requires::Rootfs("docker:///busybox#latest"),
            ..need("d", 0)
        };
        assert_eq!(place(&mut cells, &docker), Err(ERR_NO_COMPATIBLE_CELLS));
        let other = Need {
            requires: Requires::Rootfs("preloaded:windows"),
            ..need("w", 0)
        };
        assert_eq!(place(&mut cells, &other), Err(ERR_NO_COMPATIBLE_CELLS));
        assert_eq!(place(&mut [], &need("x", 0)), Err(ERR_NO_COMPATIBLE_CELLS));
    }

    #[test]
    fn runs_go_to_cells_of_their_pool_by_fit() {
        let mut cells = vec![cell("a", "z", 1000, 10), cell("b", "z", 300, 10)];
        cells[0].cell.pool = "default".into();
        cells[1].cell.pool = "batch".into();
        let run = |pool: &'static str, memory_mb: i32| Need {
            process_guid: "def-1",
            requires: Requires::Pool(pool),
            memory_mb,
            disk_mb: 0,
        };
        let pick = place(&mut cells, &run("batch", 200)).expect("fits");
        assert_eq!(ids(&cells, &[pick]), vec!["b"]);
        assert_eq!(
            place(&mut cells, &run("batch", 200)),
            Err(ERR_INSUFFICIENT_RESOURCES),
            "b is full"
        );
        assert_eq!(place(&mut cells, &run("gpu", 1)), Err(ERR_NO_COMPATIBLE_CELLS));
        let pick = place(&mut cells, &run("default", 1000)).expect("fits");
        assert_eq!(ids(&cells, &[pick]), vec!["a"]);
    }
}
