//! The wire contract with earlier agents: every contract kept under `proto/compat/` (the two
//! before the current one) is checked against the current `vigil.v1`, by structure (every
//! message, field, enum value and RPC kept, with the same number, name and type), by bytes
//! (anything the earlier contract encodes decodes in the current one and re-encodes to the same
//! message; anything the current one encodes still decodes in the earlier one), and by a real
//! collector, which acknowledges and stores a stream that speaks only the earlier contract.

use std::path::{Path, PathBuf};

use prost::Message;
use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    ReflectMessage, Value,
};
use serde_json::Value as Json;
use vigil_e2e::Collector;
use vigil_e2e::identity::TestIdentity;
use vigil_proto::v1::AgentMessage;

/// The earlier contracts, one directory each.
fn earlier_contracts() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/compat");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("vigil/v1/report.proto").is_file())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 2, "two earlier contracts are kept under {}", root.display());
    dirs
}

/// An earlier contract compiled from its `.proto` files.
fn compile(dir: &Path) -> DescriptorPool {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("vigil/v1"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .map(|path| path.strip_prefix(dir).unwrap().to_owned())
        .collect();
    protox::Compiler::new([dir])
        .and_then(|mut compiler| {
            compiler.include_imports(true).open_files(&files)?;
            Ok(compiler.descriptor_pool())
        })
        .unwrap_or_else(|e| panic!("compile {}: {e}", dir.display()))
}

fn current() -> DescriptorPool {
    DescriptorPool::decode(vigil_proto::FILE_DESCRIPTOR_SET).expect("current descriptors")
}

fn vigil_messages(pool: &DescriptorPool) -> Vec<MessageDescriptor> {
    pool.all_messages().filter(|m| m.full_name().starts_with("vigil.")).collect()
}

/// A field's type, comparable across pools.
fn type_name(field: &FieldDescriptor) -> String {
    let kind = match field.kind() {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        scalar => format!("{scalar:?}"),
    };
    let cardinality = match field.cardinality() {
        Cardinality::Repeated => "repeated ",
        _ => "",
    };
    format!("{cardinality}{kind}")
}

#[test]
fn every_message_field_enum_value_and_rpc_of_earlier_contracts_is_kept() {
    let now = current();
    for dir in earlier_contracts() {
        let then = compile(&dir);
        let mut problems = Vec::new();
        for message in vigil_messages(&then) {
            let Some(kept) = now.get_message_by_name(message.full_name()) else {
                problems.push(format!("message {} is gone", message.full_name()));
                continue;
            };
            for field in message.fields() {
                let place =
                    format!("{}.{} = {}", message.full_name(), field.name(), field.number());
                match kept.get_field(field.number()) {
                    None => problems.push(format!("{place} is gone")),
                    Some(same) if same.name() != field.name() => {
                        problems.push(format!("{place} is now named {}", same.name()))
                    }
                    Some(same) if type_name(&same) != type_name(&field) => problems.push(format!(
                        "{place} was {} and is now {}",
                        type_name(&field),
                        type_name(&same)
                    )),
                    Some(same)
                        if same.containing_oneof().map(|o| o.name().to_owned())
                            != field.containing_oneof().map(|o| o.name().to_owned()) =>
                    {
                        problems.push(format!("{place} moved in or out of a oneof"))
                    }
                    Some(_) => {}
                }
            }
        }
        for enumeration in then.all_enums().filter(|e| e.full_name().starts_with("vigil.")) {
            let Some(kept) = now.get_enum_by_name(enumeration.full_name()) else {
                problems.push(format!("enum {} is gone", enumeration.full_name()));
                continue;
            };
            for value in enumeration.values() {
                match kept.get_value(value.number()) {
                    Some(same) if same.name() == value.name() => {}
                    _ => problems.push(format!(
                        "{}.{} = {} is gone or renamed",
                        enumeration.full_name(),
                        value.name(),
                        value.number()
                    )),
                }
            }
        }
        for service in then.services() {
            let Some(kept) = now.get_service_by_name(service.full_name()) else {
                problems.push(format!("service {} is gone", service.full_name()));
                continue;
            };
            for method in service.methods() {
                let same = kept.methods().find(|m| m.name() == method.name());
                let shape = |m: &prost_reflect::MethodDescriptor| {
                    (
                        m.input().full_name().to_owned(),
                        m.output().full_name().to_owned(),
                        m.is_client_streaming(),
                        m.is_server_streaming(),
                    )
                };
                if same.as_ref().map(shape) != Some(shape(&method)) {
                    problems.push(format!(
                        "rpc {}.{} is gone or changed",
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}: {problems:#?}", dir.display());
        eprintln!(
            "{}: {} messages, {} enums and {} services kept",
            dir.display(),
            vigil_messages(&then).len(),
            then.all_enums().count(),
            then.services().count()
        );
    }
}

/// A message of `descriptor` with every field set to a value other than its default (in a
/// oneof, the first member), nested messages `depth` levels deep.
fn filled(descriptor: &MessageDescriptor, depth: u32) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        if let Some(oneof) = field.containing_oneof()
            && oneof.fields().next().is_some_and(|first| first.number() != field.number())
        {
            continue;
        }
        let value = match field.kind() {
            Kind::Double => Value::F64(1.5),
            Kind::Float => Value::F32(2.5),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-3),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-4_000_000_000),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(7),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(8_000_000_000),
            Kind::Bool => Value::Bool(true),
            Kind::String => Value::String(format!("{} ✓", field.name())),
            Kind::Bytes => Value::Bytes(b"\x00\xffbytes".to_vec().into()),
            Kind::Enum(e) => Value::EnumNumber(e.values().map(|v| v.number()).max().unwrap_or(0)),
            Kind::Message(_) if depth == 0 => continue,
            Kind::Message(m) => Value::Message(filled(&m, depth - 1)),
        };
        assert!(!field.is_map(), "{}: maps are not filled yet", field.full_name());
        let value = if field.is_list() { Value::List(vec![value.clone(), value]) } else { value };
        message.set_field(&field, value);
    }
    message
}

#[test]
fn messages_of_earlier_contracts_decode_now_and_come_back_unchanged() {
    let now = current();
    for dir in earlier_contracts() {
        let then = compile(&dir);
        let mut checked = 0;
        for message in vigil_messages(&then) {
            let name = message.full_name();
            let newer = now.get_message_by_name(name).expect("kept (see the structure test)");

            // What an earlier agent sends, as the collector reads it and hands it on.
            let sent = filled(&message, 6);
            let read = DynamicMessage::decode(newer.clone(), sent.encode_to_vec().as_slice())
                .unwrap_or_else(|e| panic!("{}: {name} does not decode now: {e}", dir.display()));
            let back = DynamicMessage::decode(message.clone(), read.encode_to_vec().as_slice())
                .unwrap_or_else(|e| panic!("{}: {name} does not come back: {e}", dir.display()));
            assert!(back == sent, "{}: {name} changed on its way through", dir.display());

            // What the current collector answers, as an earlier agent reads it.
            let answer = filled(&newer, 6);
            let understood =
                DynamicMessage::decode(message.clone(), answer.encode_to_vec().as_slice())
                    .unwrap_or_else(|e| {
                        panic!("{}: current {name} does not decode then: {e}", dir.display())
                    });
            // Fields of scalar and enum types compare here; a nested message is its own
            // message type, checked in its own turn of this loop.
            for field in message.fields().filter(|f| !matches!(f.kind(), Kind::Message(_))) {
                if answer.has_field_by_number(field.number()) {
                    assert_eq!(
                        Some(understood.get_field(&field).as_ref()),
                        answer.get_field_by_number(field.number()).as_deref(),
                        "{}: {name}.{} reads differently",
                        dir.display(),
                        field.name()
                    );
                }
            }
            checked += 1;
        }
        // The stream envelopes decode into the collector's own types.
        let envelope = then.get_message_by_name("vigil.v1.AgentMessage").unwrap();
        AgentMessage::decode(filled(&envelope, 6).encode_to_vec().as_slice())
            .unwrap_or_else(|e| panic!("{}: AgentMessage: {e}", dir.display()));
        eprintln!("{}: {checked} messages round-tripped", dir.display());
    }
}

/// A message of `pool`'s `name` with the given fields, by name; a field the contract does not
/// have is a test error.
fn message(pool: &DescriptorPool, name: &str, fields: Vec<(&str, Value)>) -> DynamicMessage {
    let descriptor =
        pool.get_message_by_name(name).unwrap_or_else(|| panic!("no message {name} then"));
    let mut message = DynamicMessage::new(descriptor);
    for (field, value) in fields {
        let found = message
            .descriptor()
            .get_field_by_name(field)
            .unwrap_or_else(|| panic!("no field {name}.{field} then"));
        message.set_field(&found, value);
    }
    message
}

/// An `AgentMessage` encoded by the earlier contract, as the collector's generated code
/// reads it off the wire.
fn on_the_wire(pool: &DescriptorPool, kind: &str, inner: DynamicMessage) -> AgentMessage {
    let envelope = message(pool, "vigil.v1.AgentMessage", vec![(kind, Value::Message(inner))]);
    AgentMessage::decode(envelope.encode_to_vec().as_slice()).expect("decodes as AgentMessage")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_acknowledges_and_stores_what_earlier_agents_send() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("data"), None, &[]);
    for (i, dir) in earlier_contracts().iter().enumerate() {
        let then = compile(dir);
        let hostname = format!("earlier-{i}");
        let token = collector.enrollment_token("acme", "main", 1, "1h").await;
        let agent = TestIdentity::enroll(&collector, &token, &hostname).await.unwrap();
        let instance = format!("0d4b6c2a-91e7-4c1f-b5a3-7e2f9d8c6b1{i}");
        let hello = message(
            &then,
            "vigil.v1.Hello",
            vec![
                ("agent_instance", Value::String(instance.clone())),
                ("agent_version", Value::String("0.1.0-earlier".into())),
                ("interval_seconds", Value::U32(10)),
                ("machine_id", Value::String(format!("machine-{hostname}"))),
                ("hostname", Value::String(hostname.clone())),
                ("host_id", Value::String(agent.host_id.clone())),
            ],
        );
        let report = |seq: u64| {
            let facts = message(
                &then,
                "vigil.v1.HostFacts",
                vec![
                    ("hostname", Value::String(hostname.clone())),
                    ("os_name", Value::String("Debian GNU/Linux".into())),
                    ("kernel", Value::String("6.1.0-earlier".into())),
                    ("cpu_cores", Value::U32(4)),
                    ("memory_total_bytes", Value::U64(8 << 30)),
                ],
            );
            let cpu = message(
                &then,
                "vigil.v1.CpuData",
                vec![("usage_ratio", Value::F64(0.25)), ("logical_cpus", Value::U32(4))],
            );
            let probe = message(
                &then,
                "vigil.v1.ProbeResult",
                vec![
                    ("probe", Value::String("cpu".into())),
                    ("status", Value::EnumNumber(1)),
                    ("cpu", Value::Message(cpu)),
                ],
            );
            let report = message(
                &then,
                "vigil.v1.Report",
                vec![
                    ("agent_instance", Value::String(instance.clone())),
                    ("seq", Value::U64(seq)),
                    ("collected_at_unix_ms", Value::I64(now_ms())),
                    ("facts", Value::Message(facts)),
                    ("probes", Value::List(vec![Value::Message(probe)])),
                ],
            );
            on_the_wire(&then, "report", report)
        };
        let messages = vec![report(1), report(2)];
        let hello = on_the_wire(&then, "hello", hello);
        let (acked, err) = agent.stream_opened_by(&collector, hello, messages).await;
        assert!(err.is_none(), "{}: {err:?}\n{}", dir.display(), collector.proc.log_text());
        assert_eq!(acked, vec![1, 2], "{}: both reports acknowledged", dir.display());

        let stored = collector.receipt_seqs(&agent.host_id, &instance).await;
        assert_eq!(stored, [1, 2].into(), "{}: both reports stored", dir.display());
        let detail: Json = collector.get(&format!("/api/v1/hosts/{}", agent.host_id)).await;
        assert_eq!(detail["facts"]["kernel"], "6.1.0-earlier", "{}: {detail}", dir.display());
        let cpu = &detail["latest_report"]["probes"][0];
        assert_eq!(cpu["probe"], "cpu", "{}: {detail}", dir.display());
        assert_eq!(cpu["status"], "STATUS_OK", "{}: {detail}", dir.display());
    }
}
