//! Frozen bytes: what Capstan writes to disk must decode the same forever. Each sample record is
//! encoded and compared with the bytes an earlier build wrote; a change to a persisted message
//! that alters its encoding fails here and needs a new FORMAT_VERSION and a migration.

use capstan_proto::pb;
use prost::Message;

mod frozen_samples;

use frozen_samples::{actual, definition, desired, samples};

const FROZEN: &[(&str, &str)] = &[
("log entry (desire lrp)", "0801120608021001180722c1010801121c088080a8b1e39fe7cb171101000000000000001902000000000000001a9e010a9b010a98010a03776562120763662d617070731a147072656c6f616465643a63666c696e757866733420032a060a01411201313a1d221b0a131a110a02736812022d631201783204766361701080e497d012483c508002588001600a7202903f7a060a01611201317a080a016212035b325d8201026c679a01046e6f7465a201140a03746370120a31302e302e302e302f381a0150aa01050a01651002"),
    ("log entry (membership)", "080112060801100118012a1b0a050a0301020312120801120e3132372e302e302e313a37303730"),
    ("vote", "080310021801"),
    ("desired lrp row", "0a03776562120763662d617070731a147072656c6f616465643a63666c696e757866733420032a060a01411201313a1d221b0a131a110a02736812022d631201783204766361701080e497d012483c508002588001600a7202903f7a060a01611201317a080a016212035b325d8201026c679a01046e6f7465a201140a03746370120a31302e302e302e302f381a0150aa01050a01651002"),
    ("actual lrp row", "0a0377656210011a0763662d617070734001608080a8b1e39fe7cb1772030a0166"),
    ("journal record", "08011007188080a8b1e39fe7cb17222522230a210a0377656210011a0763662d617070734001608080a8b1e39fe7cb1772030a016622183a160a140a0763662d61707073103c18052085b09dc2df01"),
    ("outcome", "1205080412016d"),
    ("snapshot header", "080112060802100118092205322d392d312804"),
    ("task definition row", "0a2c74657374696e672d35633034326462652d353839352d343635652d626235332d633533633037646364356561120b68656c6c6f5f776f726c641a0774657374696e6722156c6962726172792f7562756e74753a6c61746573742a096563686f20276869273080043a060a01411201314201744a02903f588080a8b1e39fe7cb17608180a8b1e39fe7cb17"),
    ("task run row", "0a2435633034326462652d353839352d343635652d626235332d633533633037646364356562120974657374696e672d311a0568656c6c6f220774657374696e672a0d7562756e74753a6c617465737432076563686f206869388004421b0a0f464c4f54494c4c415f52554e5f4944120835633034326462654a0764656661756c745004580160026803700082010663656c6c2d31880101"),
    ("task run row (placed, with tags)", "0a027231500382010663656c6c2d318801029001019a010174a2010831302e302e302e31aa010d31302e302e302e313a37303731"),
    ("log entry (report task runs)", "0801120608031001180a224f0801121c088080a8b1e39fe7cb171101000000000000001902000000000000001a2d82012a0a280a027231120663656c6c2d3118022002280332144578697465642077697468207374617475732033"),
    ("command (place task runs)", "7a100a0e0a02723110011a0663656c6c2d31"),
    ("command (stop task run)", "8a01040a027231"),
    ("command (desire task)", "9201640a02743110401a060a014112013122540a05746573747312147072656c6f616465643a63666c696e75786673341a1d221b0a131a110a02736812022d631201783204766361701080e497d012200a5a05722e747874620b687474703a2f2f782f63627005"),
    ("command (resolve task, mark resolving)", "9a01040a027431a201040a027431"),
    ("event (task run removed, a completed receptor task)", "7a1c0a1a0a02743150047000b201070a057465737473ba01026f6bc00101"),
    ("event (task run changed)", "721c0a060a027231500112120a027231500282010663656c6c2d31880101"),
    ("log entry (update task definition)", "0801120608031001180922400801121c088080a8b1e39fe7cb171101000000000000001902000000000000001a1e621c0a0974657374696e672d31120772656e616d656428800240014a0161"),
    ("command (revoke tokens)", "aa01120a100a0461312d72108080a8b1e39fe7cb17"),
    ("event (tokens revoked)", "8201100a060a026131100212060a0261301001"),
    ("command (apply cf manifest)", "e201390a02733112330a0473686f70120762757379626f781a220a037765621205687474706418032080023204687474703a072f6865616c7468401e"),
    ("command (scale cf process, terminate cf instance)", "f201110a027031100028ffffffffffffffffff01fa01060a0270311002"),
    ("event (cf process changed)", "a2017312710a027031120261311a02733122026f312a0377656232057365727665400148800850800858ffffffffffffffffff0162080a04706f7274103c6a090a0770726f636573737202763178018001028a01210a1f0a116578616d706c652e636f6d2f6672756974120a73747261776265727279"),
    ("event (cf app changed, cf job recorded)", "9a012312210a026131120473686f701a02733122026f312802320762757379626f7838014002aa01360a340a026a31121473706163652e6170706c795f6d616e69666573741a08434f4d504c455445280130013a0273314206737061636573"),
    ("log entry (a batch: proposal version 2, two commands)", "0801120608041002180b22320802121c088080a8b1e39fe7cb1711010000000000000019020000000000000022071a050a0377656222078a01040a027231"),
    ("command (cf env patch, restart, rollout step)", "ca01260803120261312a1e0a170a0644425f55524c120d706f7374677265733a2f2f646212034f4c44da01080a026131100118018202040a027031"),
    ("event (cf app with env changed, cf process in a rollout changed)", "9a011f121d0a02613152170a0644425f55524c120d706f7374677265733a2f2f6462a2010f120d0a027031720276329201027631"),
];

#[test]
fn persisted_encodings_are_frozen() {
    let got = samples();
    if std::env::var_os("CAPSTAN_PRINT_FROZEN").is_some() {
        for (name, bytes) in &got {
            println!("    (\"{name}\", \"{}\"),", hex::encode(bytes));
        }
    }
    assert_eq!(got.len(), FROZEN.len(), "every sample has frozen bytes");
    for ((name, bytes), (frozen_name, frozen_hex)) in got.iter().zip(FROZEN) {
        assert_eq!(name, frozen_name);
        assert_eq!(&hex::encode(bytes), frozen_hex, "encoding of {name} changed");
        // ...and the frozen bytes still decode to the same sample.
        let frozen = hex::decode(frozen_hex).expect("hex");
        assert_eq!(&frozen, bytes, "{name}");
    }
}

#[test]
fn frozen_bytes_decode() {
    for (name, hexed) in FROZEN {
        let bytes = hex::decode(hexed).expect("hex");
        let ok = match *name {
            n if n.starts_with("log entry") => pb::LogEntry::decode(bytes.as_slice()).is_ok(),
            "vote" => pb::Vote::decode(bytes.as_slice()).is_ok(),
            "desired lrp row" => pb::DesiredLrp::decode(bytes.as_slice()).is_ok_and(|d| d == desired()),
            "actual lrp row" => pb::ActualLrp::decode(bytes.as_slice()).is_ok_and(|a| a == actual()),
            "journal record" => pb::JournalRecord::decode(bytes.as_slice()).is_ok(),
            "outcome" => pb::Outcome::decode(bytes.as_slice()).is_ok(),
            "snapshot header" => pb::SnapshotHeader::decode(bytes.as_slice()).is_ok(),
            "task definition row" => pb::TaskDefinition::decode(bytes.as_slice()).is_ok_and(|d| d == definition()),
            n if n.starts_with("task run row") => pb::TaskRun::decode(bytes.as_slice()).is_ok(),
            n if n.starts_with("event") => pb::Event::decode(bytes.as_slice()).is_ok(),
            n if n.starts_with("command") => pb::Command::decode(bytes.as_slice()).is_ok_and(|c| c.kind.is_some()),
            _ => false,
        };
        assert!(ok, "{name} no longer decodes");
    }
}

/// What an AppendEntries carried before entries went as bytes (`repeated LogEntry entries = 3`).
#[derive(Clone, PartialEq, prost::Message)]
struct AppendEntriesAsMessages {
    #[prost(message, optional, tag = "1")]
    vote: Option<pb::Vote>,
    #[prost(message, optional, tag = "2")]
    prev_log_id: Option<pb::LogId>,
    #[prost(message, repeated, tag = "3")]
    entries: Vec<pb::LogEntry>,
    #[prost(message, optional, tag = "4")]
    leader_commit: Option<pb::LogId>,
}

/// Peers of the builds before and after `AppendEntriesRequest.entries` became `repeated bytes` (each
/// an encoded `LogEntry`) understand each other both ways: a rolling upgrade mixes them.
#[test]
fn append_entries_as_bytes_is_the_same_on_the_wire_as_entries_as_messages() {
    // The frozen log entries, as a log stores them.
    let stored: Vec<Vec<u8>> = samples()
        .into_iter()
        .filter(|(name, _)| name.starts_with("log entry"))
        .map(|(_, bytes)| bytes)
        .collect();
    assert!(stored.len() >= 2, "samples hold log entries");
    let decoded: Vec<pb::LogEntry> = stored
        .iter()
        .map(|b| pb::LogEntry::decode(b.as_slice()).expect("a log entry"))
        .collect();
    let vote = Some(pb::Vote {
        term: 2,
        node_id: 1,
        committed: true,
    });
    let commit = Some(pb::LogId {
        term: 2,
        node_id: 1,
        index: 9,
    });
    let old = AppendEntriesAsMessages {
        vote,
        prev_log_id: None,
        entries: decoded,
        leader_commit: commit,
    };
    let new = pb::AppendEntriesRequest {
        vote,
        prev_log_id: None,
        entries: stored.into_iter().map(Into::into).collect(),
        leader_commit: commit,
    };
    assert_eq!(old.encode_to_vec(), new.encode_to_vec());
    let read_by_new = pb::AppendEntriesRequest::decode(old.encode_to_vec().as_slice()).expect("new reads old");
    assert_eq!(read_by_new, new);
    let read_by_old = AppendEntriesAsMessages::decode(new.encode_to_vec().as_slice()).expect("old reads new");
    assert_eq!(read_by_old, old);
}
