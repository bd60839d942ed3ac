// kafkajs 2.x against a 3-node shardlog cluster while the test kills a partition leader's node:
// an idempotent acks=all producer and a group consumer carry on.
//
// Usage: node kafkajs_failover.js BOOTSTRAP TOPIC SECONDS. Creates TOPIC (3 partitions,
// replication factor 3, min.insync.replicas 2), then sends for SECONDS (one value per send,
// awaited, retried by kafkajs) while a group member consumes; prints "READY" once records flow
// (the test then kills a leader and restarts it). At the end every acknowledged value must have
// been consumed and no two acknowledged values share an offset. Prints one JSON line; exits
// non-zero with a message on the first failed check.
const path = require('path');
const kafkajsPath = process.env.KAFKAJS_PATH || path.join(__dirname, '..', '..', '..', 'target', 'js', 'node_modules', 'kafkajs');
const { Kafka, logLevel } = require(kafkajsPath);

const PARTITIONS = 3;
const WAIT_MS = 90000;

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

(async () => {
  const [bootstrap, topic, secondsText] = process.argv.slice(2);
  const seconds = Number(secondsText);
  const kafka = new Kafka({
    clientId: 'kafkajs-failover',
    brokers: bootstrap.split(','),
    logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: 100, retries: 30, maxRetryTime: 2000 },
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 3, configEntries: [{ name: 'min.insync.replicas', value: '2' }] }],
    waitForLeaders: true,
  });
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const consumed = new Map(); // value -> count
  const consumer = kafka.consumer({ groupId: `${topic}-group`, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const value = message.value.toString();
      consumed.set(value, (consumed.get(value) || 0) + 1);
    },
  });

  const acked = new Map(); // value -> "partition:offset"
  let longestStall = 0;
  let lastAck = Date.now();
  let ready = false;
  const start = Date.now();
  let sent = 0;
  while (Date.now() - start < seconds * 1000) {
    const value = `v${sent}`;
    sent += 1;
    let result;
    try {
      result = await producer.send({ topic, acks: -1, timeout: 30000, messages: [{ key: `k${sent}`, value }] });
    } catch (e) {
      fail(`send ${value}: ${e && e.message}`);
    }
    const now = Date.now();
    longestStall = Math.max(longestStall, now - lastAck);
    lastAck = now;
    const r = result[0];
    acked.set(value, `${r.partition}:${r.baseOffset}`);
    if (!ready && acked.size >= 50) {
      console.log('READY');
      ready = true;
    }
  }
  const deadline = Date.now() + WAIT_MS;
  const missing = () => [...acked.keys()].filter((v) => !consumed.has(v));
  while (Date.now() < deadline && missing().length > 0) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const lost = missing();
  if (lost.length > 0) fail(`${lost.length} acknowledged values never consumed, e.g. ${lost.slice(0, 5)}`);
  const positions = new Set(acked.values());
  if (positions.size !== acked.size) fail('two values acknowledged at the same offset');
  await consumer.disconnect();
  await producer.disconnect();
  console.log(JSON.stringify({
    acked: acked.size,
    duplicates_consumed: [...consumed.values()].filter((c) => c > 1).length,
    longest_ack_stall_s: longestStall / 1000,
  }));
  process.exit(0);
})().catch((e) => fail(`kafkajs error: ${e && e.stack ? e.stack : e}`));
