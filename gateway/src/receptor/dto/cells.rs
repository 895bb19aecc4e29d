//! Cells and fresh domains.

use std::collections::BTreeMap;

use capstan_proto::pb;
use serde::{Deserialize, Serialize};

use crate::common::body::null_default;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CellCapacity {
    pub memory_mb: i32,
    pub disk_mb: i32,
    pub containers: i32,
}

/// CellResponse (spec/receptor.md §3.8).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CellResponse {
    pub cell_id: String,
    pub zone: String,
    pub capacity: CellCapacity,
    pub rootfs_providers: BTreeMap<String, Vec<String>>,
}

impl From<pb::Cell> for CellResponse {
    fn from(c: pb::Cell) -> Self {
        let cap = c.capacity.unwrap_or_default();
        let mut providers = BTreeMap::new();
        providers.insert("preloaded".to_owned(), c.preloaded_stacks);
        if c.docker {
            providers.insert("docker".to_owned(), Vec::new());
        }
        CellResponse {
            cell_id: c.cell_id,
            zone: c.zone,
            capacity: CellCapacity {
                memory_mb: cap.memory_mb,
                disk_mb: cap.disk_mb,
                containers: cap.containers,
            },
            rootfs_providers: providers,
        }
    }
}

// ---------- freshness ----------

/// FreshDomainBumpRequest / FreshDomainResponse. `ttl_in_seconds` is signed here so a
/// negative value is refused with InvalidDomain rather than as undecodable JSON.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct FreshDomain {
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ttl_in_seconds: i64,
}
