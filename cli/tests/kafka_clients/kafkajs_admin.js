// kafkajs 2.x against shardlog: produce, consume in a group, and every admin call it has.
// Usage: node kafkajs_admin.js BOOTSTRAP TOPIC
// Prints one "OK <step>" line per step; exits non-zero on the first failure (with the step).
const path = require('path');
// .ci/run installs kafkajs under target/js (npm install --prefix target/js kafkajs@2).
const kafkajsPath = process.env.KAFKAJS_PATH || path.join(__dirname, '..', '..', '..', 'target', 'js', 'node_modules', 'kafkajs');
const { Kafka, logLevel, ConfigResourceTypes } = require(kafkajsPath);

const [bootstrap, topic] = process.argv.slice(2);
const group = `${topic}-group`;
const kafka = new Kafka({ clientId: 'kafkajs-probe', brokers: [bootstrap], logLevel: logLevel.NOTHING });
const admin = kafka.admin();
const producer = kafka.producer();
const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000 });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function step(name, f) {
  try {
    await f();
    console.log(`OK ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
}

(async () => {
  await admin.connect();
  await step('createTopics', async () => {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
      waitForLeaders: true,
    });
    check(created === true, `created ${created}`);
  });
  await step('listTopics', async () => check((await admin.listTopics()).includes(topic), 'topic listed'));
  await step('fetchTopicMetadata', async () => {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    check(md.topics[0].partitions.length === 3, JSON.stringify(md));
  });
  await step('describeCluster', async () => {
    const cluster = await admin.describeCluster();
    check(cluster.brokers.length >= 1 && cluster.clusterId, JSON.stringify(cluster));
  });
  await producer.connect();
  await step('produce', async () => {
    const messages = Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
    await producer.send({ topic, messages });
  });
  await step('fetchTopicOffsets', async () => {
    const offsets = await admin.fetchTopicOffsets(topic);
    const total = offsets.reduce((n, p) => n + Number(p.high), 0);
    check(total === 30, JSON.stringify(offsets));
  });
  await step('consume in a group', async () => {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let seen = 0;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`consumed ${seen} of 30`)), 60000);
      consumer.run({
        eachMessage: async () => {
          seen += 1;
          if (seen === 30) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
    // Let the consumer commit.
    await new Promise((r) => setTimeout(r, 6000));
  });
  await step('listGroups', async () => {
    const { groups } = await admin.listGroups();
    check(groups.some((g) => g.groupId === group && g.protocolType === 'consumer'), JSON.stringify(groups));
  });
  await step('describeGroups', async () => {
    const { groups } = await admin.describeGroups([group]);
    const g = groups[0];
    check(g.state === 'Stable' && g.members.length === 1, JSON.stringify(g));
    check(g.members[0].clientId === 'kafkajs-probe', JSON.stringify(g.members[0]));
    check(g.members[0].memberId.startsWith('kafkajs-probe-'), JSON.stringify(g.members[0]));
  });
  await step('fetchOffsets', async () => {
    const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const total = offsets[0].partitions.reduce((n, p) => n + Number(p.offset), 0);
    check(total === 30, JSON.stringify(offsets));
  });
  await consumer.disconnect();
  await step('describeConfigs', async () => {
    const res = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
      includeSynonyms: false,
    });
    const entries = res.resources[0].configEntries;
    const retention = entries.find((e) => e.configName === 'retention.ms');
    check(retention && retention.configValue === '3600000', JSON.stringify(retention));
  });
  await step('describeConfigs broker', async () => {
    const res = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.BROKER, name: '0' }] });
    check(res.resources[0].configEntries.length > 0, JSON.stringify(res));
  });
  await step('alterConfigs', async () => {
    await admin.alterConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '7200000' }] }],
    });
    const res = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    });
    check(res.resources[0].configEntries[0].configValue === '7200000', JSON.stringify(res));
  });
  await step('deleteTopicRecords', async () => {
    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '-1' }] });
    const offsets = await admin.fetchTopicOffsets(topic);
    const p0 = offsets.find((p) => p.partition === 0);
    check(p0.low === p0.high, JSON.stringify(p0));
  });
  await step('resetOffsets', async () => {
    await admin.resetOffsets({ groupId: group, topic, earliest: true });
  });
  await step('deleteGroups', async () => {
    const res = await admin.deleteGroups([group]);
    check(res[0].errorCode === 0, JSON.stringify(res));
    const { groups } = await admin.listGroups();
    check(!groups.some((g) => g.groupId === group), JSON.stringify(groups));
  });
  await step('deleteTopics', async () => {
    await admin.deleteTopics({ topics: [topic] });
    check(!(await admin.listTopics()).includes(topic), 'topic gone');
  });
  await producer.disconnect();
  await admin.disconnect();
  console.log('ALL OK');
  process.exit(0);
})().catch((e) => {
  console.log(`FAIL ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
