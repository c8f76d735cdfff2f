"""Reads the first --count records of one topic with confluent-kafka's Consumer and decodes
each value with the registry's AvroDeserializer, the way an analyst's Python tooling would;
prints one JSON object per record: partition, offset, key, value. (A count rather than the
watermarks: the end of a topic with transactions lies past markers no record is delivered for.)"""

import argparse
import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    """Avro logical values as the export prints them."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot show {type(value)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", required=True, type=int)
    args = parser.parse_args()

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": "analyst-python",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    partitions = consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions
    consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions])
    read = 0
    give_up = time.monotonic() + 60
    while read < args.count:
        if time.monotonic() > give_up:
            sys.exit(f"read {read} of {args.count} records in 60 s")
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            sys.exit(f"read failed: {message.error()}")
        value = deserialize(message.value(), SerializationContext(args.topic, MessageField.VALUE))
        print(json.dumps({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().decode() if message.key() else None,
            "value": value,
        }, default=plain))
        read += 1
    consumer.close()


if __name__ == "__main__":
    main()
