//! Dynamic Consistency Boundaries on real nodes over gRPC: query reads by types and tags
//! from any node, appends whose query condition is checked when the partition's state
//! machine applies them (concurrent appends on one condition: exactly one wins, through
//! different nodes), "as of" query reads, deleted events hidden from reads but not from
//! conditions, the limits of a query, and the CLI's `stream query` and `--fail-if-match`.

mod harness;

use cairn_client::{
    CairnClient, ClientError, Code, Consistency, CreateTopicOptions, EventData, EventQuery, ExpectedRevision,
    QueryCondition, QueryItem, QueryOptions, QueryPartition, StreamWrite, json_event,
};
use harness::workload::connect;
use harness::{Cluster, FAST_RAFT};

const TOPIC: &str = "courses";

fn tagged(event_type: &str, tags: &[&str]) -> EventData {
    EventData { tags: tags.iter().map(|tag| tag.to_string()).collect(), ..json_event(event_type, "{}") }
}

fn item(types: &[&str], tags: &[&str]) -> QueryItem {
    QueryItem::new(types.iter().copied(), tags.iter().copied())
}

/// What a decision about enrolling in course 1 depends on: the course's definition and its
/// enrolments.
fn course_one() -> EventQuery {
    EventQuery { items: vec![item(&["CourseDefined", "StudentEnrolled"], &["course=1"])] }
}

fn write(stream: &str, event: EventData) -> StreamWrite {
    StreamWrite { stream: stream.to_owned(), expected: ExpectedRevision::Any, events: vec![event] }
}

async fn enrol(
    client: &CairnClient,
    student: &str,
    after: Option<u64>,
) -> Result<cairn_client::AppendedEvents, ClientError> {
    let event = tagged("StudentEnrolled", &["course=1", &format!("student={student}")]);
    let condition = Some(QueryCondition { query: course_one(), after });
    client.append_to_streams_if(TOPIC, vec![write(&format!("{{course-1}}/{student}"), event)], vec![], condition).await
}

async fn query(client: &CairnClient, query: EventQuery, options: QueryOptions) -> cairn_client::QueryResult {
    client.query_events(TOPIC, QueryPartition::OfKey("{course-1}".into()), query, options).await.expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_conditions_and_query_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let mut clients = Vec::new();
    for address in &addresses {
        clients.push(connect(address).await);
    }
    let mut options = CreateTopicOptions::new(TOPIC, 4);
    options.replication_factor = 3;
    clients[0].create_topic(options).await.expect("create topic");

    let defined = clients[0]
        .append_to_streams(TOPIC, vec![write("{course-1}/course", tagged("CourseDefined", &["course=1"]))], vec![])
        .await
        .expect("define the course");
    // Another course and another type in the same partition: no part of the decision.
    let other = clients[0]
        .append_to_streams(
            TOPIC,
            vec![
                write("{course-1}/notes", tagged("NoteTaken", &["course=1"])),
                write("{course-1}/other", tagged("StudentEnrolled", &["course=2"])),
            ],
            vec![],
        )
        .await
        .expect("unrelated events");

    // Read the decision's events through another node (read-your-writes), and decide.
    let fresh = QueryOptions { consistency: Consistency::ReadYourWrites(other.applied_index), ..Default::default() };
    let read = query(&clients[1], course_one(), fresh).await;
    assert_eq!(read.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["CourseDefined"]);
    assert_eq!(read.events[0].offset, defined.positions[0].0);
    assert_eq!(read.position, Some(other.positions[1].0), "the read looked at everything stored");
    assert!(!read.limited);
    let by_partition = clients[2]
        .query_events(
            TOPIC,
            QueryPartition::Partition(read.partition),
            course_one(),
            QueryOptions { consistency: Consistency::Linearizable, ..Default::default() },
        )
        .await
        .expect("query by partition");
    assert_eq!((by_partition.events, by_partition.position), (read.events.clone(), read.position));

    // The first enrolment after that read succeeds; a second one made on the same read is
    // refused, naming the event that changed the decision.
    let ada = enrol(&clients[1], "ada", read.position).await.expect("ada enrols");
    let refused = enrol(&clients[2], "bob", read.position).await.expect_err("decided on a stale read");
    let ClientError::ConditionFailed { violations, query: Some(violation), message } = refused else {
        panic!("{refused:?}")
    };
    assert!(violations.is_empty(), "{message}");
    assert_eq!((violation.after, violation.first_match), (read.position, ada.positions[0].0), "{message}");
    assert!(message.contains("query condition failed"), "{message}");
    // Events that are no part of the decision do not refuse it.
    let unrelated = clients[0]
        .append_to_streams(TOPIC, vec![write("{course-1}/more-notes", tagged("NoteTaken", &["course=1"]))], vec![])
        .await
        .expect("unrelated");
    let again = query(&clients[2], course_one(), QueryOptions { after: read.position, ..fresh_for(&unrelated) }).await;
    assert_eq!(again.events.len(), 1, "ada's enrolment");
    enrol(&clients[2], "bob", again.position).await.expect("bob enrols on a fresh read");

    // Many appends on one read, through every node at once: exactly one wins.
    let now =
        query(&clients[0], course_one(), QueryOptions { consistency: Consistency::Linearizable, ..Default::default() })
            .await;
    let racers = (0..9).map(|i| {
        let client = clients[i % 3].clone();
        let position = now.position;
        tokio::spawn(async move { enrol(&client, &format!("racer-{i}"), position).await })
    });
    let mut won = 0;
    for racer in racers {
        match racer.await.expect("join") {
            Ok(_) => won += 1,
            Err(ClientError::ConditionFailed { query: Some(_), .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(won, 1, "appends on one read of one decision: exactly one wins");

    // Paged reads return what one read does; "as of" the definition's time, only it.
    let whole = clients[0]
        .query_all_events(
            TOPIC,
            QueryPartition::OfKey("{course-1}".into()),
            course_one(),
            None,
            Consistency::Linearizable,
        )
        .await
        .expect("whole");
    assert_eq!(whole.events.len(), 4, "course, ada, bob, one racer");
    let paged = query(
        &clients[0],
        course_one(),
        QueryOptions { max_events: 3, consistency: Consistency::Linearizable, ..Default::default() },
    )
    .await;
    assert!(paged.limited && paged.events.len() == 3);
    assert_eq!(paged.events[..], whole.events[..3]);
    let as_of = QueryOptions {
        as_of_ms: Some(defined.timestamp_ms),
        consistency: Consistency::Linearizable,
        ..Default::default()
    };
    let then = query(&clients[0], course_one(), as_of).await;
    assert_eq!(then.events.len(), 1);
    assert_eq!(then.events[0].event_type, "CourseDefined");
    // Every event of the partition: no items.
    let everything = query(
        &clients[0],
        EventQuery::all(),
        QueryOptions { consistency: Consistency::Linearizable, ..Default::default() },
    )
    .await;
    assert_eq!(everything.events.len(), 7, "every event appended");

    // A deleted stream's events leave query reads at once, but a condition still sees them
    // (what a read hides depends on its time; an apply-time check must not).
    let deleted =
        clients[0].delete_stream(TOPIC, "{course-1}/ada", ExpectedRevision::Any, false).await.expect("delete");
    let after_delete =
        QueryOptions { consistency: Consistency::ReadYourWrites(deleted.applied_index), ..Default::default() };
    let visible = query(&clients[1], course_one(), after_delete).await;
    assert!(visible.events.iter().all(|e| e.stream != "{course-1}/ada"), "{:?}", visible.events);
    assert_eq!(visible.events.len(), 3);
    let refused = enrol(&clients[1], "late", read.position).await.expect_err("ada's enrolment still counts");
    assert!(
        matches!(refused, ClientError::ConditionFailed { query: Some(v), .. } if v.first_match == ada.positions[0].0)
    );

    // Bad queries: clear errors, nothing stored.
    let empty_tag = EventQuery { items: vec![item(&["StudentEnrolled"], &[""])] };
    let err = clients[0].query_events(TOPIC, QueryPartition::Partition(0), empty_tag, QueryOptions::default()).await;
    assert_eq!(err.expect_err("empty tag").code(), Some(Code::InvalidArgument));
    let too_many = EventQuery { items: (0..17).map(|i| item(&[&format!("T{i}")], &[])).collect() };
    let err =
        clients[0].query_events(TOPIC, QueryPartition::Partition(0), too_many.clone(), QueryOptions::default()).await;
    let err = err.expect_err("too many items");
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("limit is 16"), "{err}");
    let condition = Some(QueryCondition { query: too_many, after: None });
    let err = clients[0]
        .append_to_streams_if(TOPIC, vec![write("{course-1}/x", tagged("E", &[]))], vec![], condition)
        .await
        .expect_err("too many items in a condition");
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    let mut raw = clients[0].proto_client();
    let unnamed = cairn_client::proto::QueryEventsRequest { topic: TOPIC.into(), ..Default::default() };
    let status = raw.query_events(unnamed).await.expect_err("no partition named");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("`key`"), "{}", status.message());
    let err = clients[0].query_events(TOPIC, QueryPartition::Partition(9), course_one(), QueryOptions::default()).await;
    assert_eq!(err.expect_err("no partition 9").code(), Some(Code::NotFound));

    // The CLI: a query prints the events and the position; an append on it succeeds once.
    let node = &cluster.nodes[0];
    let cli_ok = |args: &[&str]| tokio::task::block_in_place(|| node.cli_ok(args));
    let printed = cli_ok(&[
        "stream",
        "query",
        TOPIC,
        "--key",
        "{course-1}",
        "--match",
        "CourseDefined,StudentEnrolled:course=1",
        "--linearizable",
        "--output",
        "json",
    ]);
    let lines: Vec<serde_json::Value> =
        printed.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    let (last, events) = lines.split_last().expect("lines");
    assert_eq!(events.len(), 3, "{printed}");
    assert_eq!(events[0]["event_type"], "CourseDefined");
    let position = last["position"].as_u64().expect("a position").to_string();
    let append = |student: &str| {
        tokio::task::block_in_place(|| {
            node.cli(&[
                "stream",
                "append",
                TOPIC,
                &format!("{{course-1}}/{student}"),
                "--type",
                "StudentEnrolled",
                "--tag",
                "course=1",
                "--tag",
                &format!("student={student}"),
                "--fail-if-match",
                "CourseDefined,StudentEnrolled:course=1",
                "--after",
                &position,
            ])
        })
    };
    harness::assert_success(&["stream", "append"], &append("cli-1"));
    let stale = append("cli-2");
    assert!(!stale.status.success(), "the second append on one read is refused");
    let message = String::from_utf8_lossy(&stale.stderr);
    assert!(message.contains(&format!("after offset {position}")) && message.contains("--after"), "{message}");
    let table =
        cli_ok(&["stream", "query", TOPIC, "--key", "{course-1}", "--match", ":student=cli-1", "--linearizable"]);
    assert!(table.contains("{course-1}/cli-1") && table.contains("position: "), "{table}");
}

/// A query read after a position whose records retention removed says so (OUT_OF_RANGE,
/// naming the first offset still stored) instead of skipping them; from the start it reads
/// what is stored, and a condition counts only stored events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_read_into_a_removed_range_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--retention-check-interval-ms", "200"]);
    let node = tokio::task::block_in_place(|| harness::Node::start(&dir.path().join("node1"), &args));
    let client = connect(&node.address).await;
    let mut options = CreateTopicOptions::new(TOPIC, 1);
    options.retention_ms = Some(1);
    client.create_topic(options).await.expect("create topic");
    let partition = || QueryPartition::Partition(0);
    let after = |after| QueryOptions { after, ..Default::default() };

    // Appends one enrolment, then waits until retention removed everything up to it.
    let enrol_and_expire = |student: &'static str, offset: u64| {
        let client = client.clone();
        async move {
            let event = tagged("StudentEnrolled", &["course=1", &format!("student={student}")]);
            let appended = client.append_to_streams(TOPIC, vec![write("{course-1}/s", event)], vec![]).await;
            assert_eq!(appended.expect("enrol").positions[0].0, offset);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let read = client.read(TOPIC, 0, offset + 1, 1, 0, 0).await;
                if read.as_ref().is_ok_and(|read| read.log_start_offset == offset + 1) {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "retention never removed offset {offset}: {read:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    enrol_and_expire("a", 0).await;
    // From the start, or after the last removed offset: nothing is skipped.
    for from in [None, Some(0)] {
        let read = client.query_events(TOPIC, partition(), course_one(), after(from)).await.expect("read");
        assert_eq!((read.events.len(), read.position), (0, Some(0)), "after {from:?}");
    }
    enrol_and_expire("b", 1).await;
    let err = client.query_events(TOPIC, partition(), course_one(), after(Some(0))).await.expect_err("1 is gone");
    assert_eq!(err.code(), Some(Code::OutOfRange), "{err}");
    assert!(err.to_string().contains("the first stored is 2"), "{err}");
    // A condition counts the events still stored: none.
    enrol(&client, "c", None).await.expect("no enrolment is stored any more");
}

/// Query options that read at least what `appended` wrote.
fn fresh_for(appended: &cairn_client::AppendedEvents) -> QueryOptions {
    QueryOptions { consistency: Consistency::ReadYourWrites(appended.applied_index), ..Default::default() }
}
