// franz-go (kgo and its kadm admin client) and Sarama against a running shardlog:
//
//	go run . BOOTSTRAP
//
// Prints "OK <step>" per step and "ALL OK"; the first failure prints "FAIL <step>: <why>" and
// exits 1. Values are checked, not only the absence of errors.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var bootstrap string

func fail(step string, format string, args ...any) {
	fmt.Printf("FAIL %s: %s\n", step, fmt.Sprintf(format, args...))
	os.Exit(1)
}

func ok(step string) { fmt.Printf("OK %s\n", step) }

func must(step string, err error) {
	if err != nil {
		fail(step, "%v", err)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: go run . BOOTSTRAP")
		os.Exit(2)
	}
	bootstrap = os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	franz(ctx)
	saramaCheck(ctx)
	fmt.Println("ALL OK")
}

func franz(ctx context.Context) {
	const topic, group = "franz", "franz-group"
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ClientID("franz-check"))
	must("kgo client", err)
	defer cl.Close()
	adm := kadm.NewClient(cl)

	retention := "3600000"
	created, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"retention.ms": &retention}, topic)
	must("kadm CreateTopic", err)
	must("kadm CreateTopic", created.Err)
	topics, err := adm.ListTopics(ctx)
	must("kadm ListTopics", err)
	if !topics.Has(topic) || len(topics[topic].Partitions) != 3 {
		fail("kadm ListTopics", "%v", topics.Names())
	}
	if topics[topic].ID == [16]byte{} {
		fail("kadm ListTopics", "no topic id")
	}
	ok("kadm CreateTopic, ListTopics (with topic id)")

	var records []*kgo.Record
	for i := 0; i < 30; i++ {
		records = append(records, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	must("kgo produce", cl.ProduceSync(ctx, records...).FirstErr())
	ok("kgo produce (idempotent)")

	consumer, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ClientID("franz-consumer"), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	must("kgo consumer", err)
	seen := 0
	for seen < 30 {
		fetches := consumer.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 {
			fail("kgo group consume", "%v", errs)
		}
		seen += fetches.NumRecords()
	}
	must("kgo commit", consumer.CommitUncommittedOffsets(ctx))
	ok("kgo group consume and commit")

	groups, err := adm.ListGroups(ctx)
	must("kadm ListGroups", err)
	if _, found := groups[group]; !found {
		fail("kadm ListGroups", "%v", groups.Groups())
	}
	described, err := adm.DescribeGroups(ctx, group)
	must("kadm DescribeGroups", err)
	g := described[group]
	if g.State != "Stable" || len(g.Members) != 1 || !strings.HasPrefix(g.Members[0].MemberID, "franz-consumer-") {
		fail("kadm DescribeGroups", "%+v", g)
	}
	lags, err := adm.Lag(ctx, group)
	must("kadm Lag", err)
	if total := lags[group].Lag.Total(); total != 0 {
		fail("kadm Lag", "total lag %d, want 0", total)
	}
	offsets, err := adm.FetchOffsets(ctx, group)
	must("kadm FetchOffsets", err)
	sum := int64(0)
	offsets.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 30 {
		fail("kadm FetchOffsets", "committed %d, want 30", sum)
	}
	ok("kadm ListGroups, DescribeGroups, Lag, FetchOffsets")
	consumer.Close()

	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	must("kadm DescribeTopicConfigs", err)
	c, err := configs.On(topic, nil)
	must("kadm DescribeTopicConfigs", err)
	found := false
	for _, entry := range c.Configs {
		if entry.Key == "retention.ms" && entry.Value != nil && *entry.Value == retention {
			found = true
		}
	}
	if !found {
		fail("kadm DescribeTopicConfigs", "retention.ms not %s", retention)
	}
	newRetention := "7200000"
	altered, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: &newRetention}}, topic)
	must("kadm AlterTopicConfigs", err)
	must("kadm AlterTopicConfigs", altered[0].Err)
	brokerConfigs, err := adm.DescribeBrokerConfigs(ctx)
	must("kadm DescribeBrokerConfigs", err)
	if len(brokerConfigs) == 0 || len(brokerConfigs[0].Configs) == 0 {
		fail("kadm DescribeBrokerConfigs", "no broker configs")
	}
	ok("kadm DescribeTopicConfigs, AlterTopicConfigs, DescribeBrokerConfigs")

	ends, err := adm.ListEndOffsets(ctx, topic)
	must("kadm ListEndOffsets", err)
	maxes, err := adm.ListMaxTimestampOffsets(ctx, topic)
	must("kadm ListMaxTimestampOffsets", err)
	end := int64(0)
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	if end != 30 {
		fail("kadm ListEndOffsets", "sum %d, want 30", end)
	}
	maxes.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || (o.Offset >= 0 && o.Timestamp <= 0) {
			fail("kadm ListMaxTimestampOffsets", "%+v", o)
		}
	})
	toDelete := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { toDelete.AddOffset(topic, o.Partition, o.Offset, -1) })
	deleted, err := adm.DeleteRecords(ctx, toDelete)
	must("kadm DeleteRecords", err)
	deleted.Each(func(d kadm.DeleteRecordsResponse) {
		if d.Err != nil {
			fail("kadm DeleteRecords", "%v", d.Err)
		}
	})
	starts, err := adm.ListStartOffsets(ctx, topic)
	must("kadm ListStartOffsets", err)
	starts.Each(func(o kadm.ListedOffset) {
		if o.Offset != ends[topic][o.Partition].Offset {
			fail("kadm ListStartOffsets", "partition %d starts at %d, want %d", o.Partition, o.Offset, ends[topic][o.Partition].Offset)
		}
	})
	ok("kadm ListEndOffsets, ListMaxTimestampOffsets, DeleteRecords, ListStartOffsets")

	var epochRequest kadm.OffsetForLeaderEpochRequest
	epochRequest.Add(topic, 0, 0)
	epochs, err := adm.OffsetForLeaderEpoch(ctx, epochRequest)
	must("kadm OffsetForLeaderEpoch", err)
	if e := epochs[topic][0]; e.Err != nil || e.EndOffset != ends[topic][0].Offset {
		fail("kadm OffsetForLeaderEpoch", "%+v", e)
	}
	producers, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: {0: {}, 1: {}, 2: {}}})
	must("kadm DescribeProducers", err)
	active := 0
	producers.EachProducer(func(kadm.DescribedProducer) { active++ })
	if active == 0 {
		fail("kadm DescribeProducers", "no idempotent producer seen")
	}
	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	must("kadm DescribeAllLogDirs", err)
	if len(dirs) == 0 {
		fail("kadm DescribeAllLogDirs", "no log dirs")
	}
	brokers, err := adm.ListBrokers(ctx)
	must("kadm ListBrokers", err)
	if len(brokers) == 0 {
		fail("kadm ListBrokers", "no brokers")
	}
	ok("kadm OffsetForLeaderEpoch, DescribeProducers, DescribeAllLogDirs, ListBrokers")

	deletedGroups, err := adm.DeleteGroups(ctx, group)
	must("kadm DeleteGroups", err)
	must("kadm DeleteGroups", deletedGroups[group].Err)
	deletedTopics, err := adm.DeleteTopics(ctx, topic)
	must("kadm DeleteTopics", err)
	must("kadm DeleteTopics", deletedTopics[topic].Err)
	ok("kadm DeleteGroups, DeleteTopics")
}

type saramaHandler struct {
	seen chan struct{}
}

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h saramaHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		session.MarkMessage(message, "")
		h.seen <- struct{}{}
	}
	return nil
}

func saramaCheck(ctx context.Context) {
	const topic, group = "sarama", "sarama-group"
	config := sarama.NewConfig()
	config.Version = sarama.V3_6_0_0
	config.ClientID = "sarama-check"
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, config)
	must("sarama ClusterAdmin", err)
	defer admin.Close()
	must("sarama CreateTopic", admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false))

	producer, err := sarama.NewSyncProducer([]string{bootstrap}, config)
	must("sarama SyncProducer", err)
	for i := 0; i < 20; i++ {
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder("v")})
		must("sarama produce", err)
	}
	producer.Close()
	ok("sarama CreateTopic, SyncProducer")

	consumerGroup, err := sarama.NewConsumerGroup([]string{bootstrap}, group, config)
	must("sarama ConsumerGroup", err)
	handler := saramaHandler{seen: make(chan struct{}, 100)}
	consumeCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumerGroup.Consume(consumeCtx, []string{topic}, handler) }()
	for i := 0; i < 20; i++ {
		select {
		case <-handler.seen:
		case <-ctx.Done():
			fail("sarama group consume", "consumed %d of 20", i)
		}
	}
	groups, err := admin.ListConsumerGroups()
	must("sarama ListConsumerGroups", err)
	if _, found := groups[group]; !found {
		fail("sarama ListConsumerGroups", "%v", groups)
	}
	descriptions, err := admin.DescribeConsumerGroups([]string{group})
	must("sarama DescribeConsumerGroups", err)
	if len(descriptions) != 1 || descriptions[0].State != "Stable" || len(descriptions[0].Members) != 1 {
		fail("sarama DescribeConsumerGroups", "%+v", descriptions[0])
	}
	stop()
	<-done
	must("sarama ConsumerGroup close", consumerGroup.Close())
	ok("sarama ConsumerGroup, ListConsumerGroups, DescribeConsumerGroups")

	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	must("sarama DescribeConfig", err)
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	if sort.SearchStrings(names, "retention.ms") == len(names) {
		fail("sarama DescribeConfig", "%v", names)
	}
	must("sarama DeleteRecords", admin.DeleteRecords(topic, map[int32]int64{0: 1}))
	must("sarama DeleteConsumerGroup", admin.DeleteConsumerGroup(group))
	must("sarama DeleteTopic", admin.DeleteTopic(topic))
	ok("sarama DescribeConfig, DeleteRecords, DeleteConsumerGroup, DeleteTopic")
}
