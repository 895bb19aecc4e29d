//! Conversions between openraft's types and their protobuf forms (what reaches disk and peers).

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};
use prost::Message;

use crate::{pb, StoreError, TypeConfig};

pub type Entry = openraft::Entry<TypeConfig>;

pub fn log_id_to_pb(id: &LogId<u64>) -> pb::LogId {
    pb::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

pub fn opt_log_id_to_pb(id: Option<&LogId<u64>>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

pub fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId<u64>> {
    id.map(log_id_from_pb)
}

pub fn vote_to_pb(v: &Vote<u64>) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub fn vote_from_pb(v: &pb::Vote) -> Vote<u64> {
    if v.committed {
        Vote::new_committed(v.term, v.node_id)
    } else {
        Vote::new(v.term, v.node_id)
    }
}

pub fn membership_to_pb(m: &Membership<u64, BasicNode>) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| pb::VoterSet {
                node_ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m
            .nodes()
            .map(|(id, n)| pb::NodeAddr {
                node_id: *id,
                addr: n.addr.clone(),
            })
            .collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Membership<u64, BasicNode> {
    let configs: Vec<BTreeSet<u64>> = m.configs.iter().map(|s| s.node_ids.iter().copied().collect()).collect();
    let nodes: BTreeMap<u64, BasicNode> = m
        .nodes
        .iter()
        .map(|n| (n.node_id, BasicNode::new(n.addr.clone())))
        .collect();
    Membership::new(configs, nodes)
}

pub fn stored_membership_to_pb(m: &StoredMembership<u64, BasicNode>) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id().as_ref()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub fn stored_membership_from_pb(m: &pb::StoredMembership) -> StoredMembership<u64, BasicNode> {
    let membership = m
        .membership
        .as_ref()
        .map(membership_from_pb)
        .unwrap_or_else(|| Membership::new(vec![], BTreeMap::<u64, BasicNode>::new()));
    StoredMembership::new(opt_log_id_from_pb(m.log_id.as_ref()), membership)
}

/// The stored bytes of an entry: the same as `entry_to_pb(e).encode_to_vec()`, without copying
/// the proposal into a message first.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let EntryPayload::Normal(proposal) = &e.payload else {
        return entry_to_pb(e).encode_to_vec();
    };
    let head = pb::LogEntry {
        version: capstan_proto::FORMAT_VERSION,
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: None,
    };
    let mut buf = Vec::with_capacity(head.encoded_len() + proposal.encoded_len() + 8);
    head.encode_raw(&mut buf);
    prost::encoding::message::encode(LOG_ENTRY_PROPOSAL_FIELD, proposal.as_ref(), &mut buf);
    buf
}

/// The field number of `LogEntry.payload.proposal` (log.proto).
const LOG_ENTRY_PROPOSAL_FIELD: u32 = 4;

pub fn entry_to_pb(e: &Entry) -> pb::LogEntry {
    let payload = match &e.payload {
        EntryPayload::Blank => pb::log_entry::Payload::Blank(true),
        EntryPayload::Normal(p) => pb::log_entry::Payload::Proposal(p.as_ref().clone()),
        EntryPayload::Membership(m) => pb::log_entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::LogEntry {
        version: capstan_proto::FORMAT_VERSION,
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(e: pb::LogEntry) -> Result<Entry, StoreError> {
    crate::known_format("log entry", e.version)?;
    let log_id = e
        .log_id
        .as_ref()
        .map(log_id_from_pb)
        .ok_or_else(|| StoreError::Corrupt("log entry without log_id".into()))?;
    let payload = match e.payload {
        Some(pb::log_entry::Payload::Blank(_)) | None => EntryPayload::Blank,
        Some(pb::log_entry::Payload::Proposal(p)) => EntryPayload::Normal(std::sync::Arc::new(p)),
        Some(pb::log_entry::Payload::Membership(m)) => EntryPayload::Membership(membership_from_pb(&m)),
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        let m = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a:1")),
                (2, BasicNode::new("b:2")),
                (3, BasicNode::new("c:3")),
                (4, BasicNode::new("d:4")),
            ]),
        );
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 2), 17),
            payload: EntryPayload::Membership(m),
        };
        let bytes = entry_to_pb(&e).encode_to_vec();
        let back = entry_from_pb(pb::LogEntry::decode(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(format!("{e:?}"), format!("{back:?}"));
    }

    #[test]
    fn an_entry_is_stored_as_its_message_encodes() {
        let proposal = pb::Proposal {
            version: capstan_proto::PROPOSAL_VERSION,
            stamp: Some(pb::Stamp {
                time_unix_ns: 7,
                id_seed_hi: 1,
                id_seed_lo: 2,
            }),
            command: None,
            commands: vec![pb::Command {
                kind: Some(pb::command::Kind::BumpFreshDomain(pb::BumpFreshDomain {
                    domain: "d".into(),
                    ttl_in_seconds: 5,
                })),
            }],
        };
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), 9),
            payload: EntryPayload::Normal(std::sync::Arc::new(proposal)),
        };
        assert_eq!(encode_entry(&e), entry_to_pb(&e).encode_to_vec());
        let blank = Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), 10),
            payload: EntryPayload::Blank,
        };
        assert_eq!(encode_entry(&blank), entry_to_pb(&blank).encode_to_vec());
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut pbe = entry_to_pb(&Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Blank,
        });
        pbe.version = 99;
        assert!(entry_from_pb(pbe).is_err());
    }
}
