//! Reading a topic that transactions wrote to: a `read_committed` reader sees the records of
//! committed transactions only, and stops at the last stable offset — not at the high
//! watermark, which counts the markers transactions leave and the records of one still open.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::support::{brokers, read_topic, unique_prefix};

/// A transactional producer on `brokers`, its transactions initialised.
fn transactional(brokers: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", unique_prefix("readers-tx"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    producer
}

/// A topic of one partition (the broker creates none by itself).
async fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let made = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .unwrap();
    made.into_iter().for_each(|result| drop(result.unwrap()));
}

fn send(producer: &BaseProducer, topic: &str, value: &str) {
    producer
        .send(BaseRecord::to(topic).key("k").payload(value).partition(0))
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_committed_records_only_and_stops_before_an_open_transaction() {
    let brokers = brokers();
    let topic = unique_prefix("readers");
    create_topic(&brokers, &topic).await;
    let producer = transactional(&brokers);
    let timeout = Duration::from_secs(30);

    producer.begin_transaction().unwrap();
    send(&producer, &topic, "committed-1");
    send(&producer, &topic, "committed-2");
    producer.commit_transaction(timeout).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "aborted");
    producer.flush(timeout).unwrap();
    producer.abort_transaction(timeout).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "committed-3");
    producer.commit_transaction(timeout).unwrap();
    // Left open while the topic is read: its record is past the last stable offset.
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "open");
    producer.flush(timeout).unwrap();

    let values: Vec<String> = read_topic(&brokers, &topic)
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert_eq!(values, ["committed-1", "committed-2", "committed-3"]);

    // Once committed, the open transaction's record is read too.
    producer.commit_transaction(timeout).unwrap();
    let values: Vec<String> = read_topic(&brokers, &topic)
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert_eq!(
        values,
        ["committed-1", "committed-2", "committed-3", "open"]
    );
}
