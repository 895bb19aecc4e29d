//! Placement: which cell an UNCLAIMED instance goes to. Fit (memory, disk, containers, rootfs
//! provider), then spread (fewest instances of the same process in the zone, then on the cell),
//! then the most free memory, then the cell id — deterministic for the same input.

use std::collections::BTreeMap;

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
    /// instances per process_guid on this cell
    pub per_process: BTreeMap<String, u32>,
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
        self.used_memory_mb += i64::from(memory_mb.max(0));
        self.used_disk_mb += i64::from(disk_mb.max(0));
        self.used_containers += 1;
        *self.per_process.entry(process_guid.to_owned()).or_default() += 1;
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

/// What one instance needs.
#[derive(Debug, Clone)]
pub struct Need<'a> {
    pub process_guid: &'a str,
    pub rootfs: &'a str,
    pub memory_mb: i32,
    pub disk_mb: i32,
}

/// Picks the cell for `need` among `cells` and records it there; returns the cell's position,
/// or the placement error Diego would report.
pub fn place(cells: &mut [CellLoad], need: &Need<'_>) -> Result<usize, &'static str> {
    let compatible: Vec<usize> = (0..cells.len())
        .filter(|&i| provides_rootfs(&cells[i].cell, need.rootfs))
        .collect();
    if compatible.is_empty() {
        return Err(ERR_NO_COMPATIBLE_CELLS);
    }
    let fitting: Vec<usize> = compatible
        .into_iter()
        .filter(|&i| cells[i].fits(need.memory_mb, need.disk_mb))
        .collect();
    if fitting.is_empty() {
        return Err(ERR_INSUFFICIENT_RESOURCES);
    }
    // instances of this process per zone, over all cells (spread is across the whole fleet)
    let mut per_zone: BTreeMap<&str, u32> = BTreeMap::new();
    for c in cells.iter() {
        *per_zone.entry(c.cell.zone.as_str()).or_default() +=
            c.per_process.get(need.process_guid).copied().unwrap_or(0);
    }
    let best = fitting
        .into_iter()
        .min_by(|&a, &b| {
            let (ca, cb) = (&cells[a], &cells[b]);
            let za = per_zone.get(ca.cell.zone.as_str()).copied().unwrap_or(0);
            let zb = per_zone.get(cb.cell.zone.as_str()).copied().unwrap_or(0);
            let pa = ca.per_process.get(need.process_guid).copied().unwrap_or(0);
            let pb_ = cb.per_process.get(need.process_guid).copied().unwrap_or(0);
            za.cmp(&zb)
                .then(pa.cmp(&pb_))
                .then(cb.free_memory_mb().cmp(&ca.free_memory_mb()))
                .then(ca.cell.cell_id.cmp(&cb.cell.cell_id))
        })
        .ok_or(ERR_INSUFFICIENT_RESOURCES)?;
    cells[best].add(need.process_guid, need.memory_mb, need.disk_mb);
    Ok(best)
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
            rootfs: "preloaded:cflinuxfs4",
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
            rootfs: "docker:///busybox#latest",
            ..need("d", 0)
        };
        assert_eq!(place(&mut cells, &docker), Err(ERR_NO_COMPATIBLE_CELLS));
        let other = Need {
            rootfs: "preloaded:windows",
            ..need("w", 0)
        };
        assert_eq!(place(&mut cells, &other), Err(ERR_NO_COMPATIBLE_CELLS));
        assert_eq!(place(&mut [], &need("x", 0)), Err(ERR_NO_COMPATIBLE_CELLS));
    }
}
