package remote_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// TestSetAndPublish: the write lands and the message reaches a subscriber
// of the channel; a nil payload writes alone; a bad key fails before
// anything is sent.
func TestSetAndPublish(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		if s.Carrier() != driver.NewCarrier(rdb) {
			t.Fatal("Carrier does not name the store's client")
		}
		name := redistest.Name(t)
		key := name + ":k"
		// A shard channel in the key's slot: served by the key's node on a
		// Cluster whatever the slot map.
		channel := "{" + key + "}:ch"
		command := "publish"
		var sub *redis.PubSub
		switch c := rdb.(type) {
		case *redis.ClusterClient:
			command = "spublish"
			sub = c.SSubscribe(ctx, channel)
		case *redis.Client:
			sub = c.Subscribe(ctx, channel)
		}
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
			t.Fatal(err)
		}
		e := driver.Entry{Kind: driver.KindValue, Payload: []byte(`"v"`), ExpiresAt: time.Now().Add(time.Minute), Version: 7}
		setErr, pubErr := s.SetAndPublish(ctx, key, e, command, channel, []byte("hello"))
		if setErr != nil || pubErr != nil {
			t.Fatalf("SetAndPublish = %v, %v", setErr, pubErr)
		}
		got, err := s.Get(ctx, key)
		if err != nil || got.Version != 7 || string(got.Payload) != `"v"` {
			t.Fatalf("Get after SetAndPublish = %+v, %v", got, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		msg, err := sub.ReceiveMessage(rctx)
		if err != nil || msg.Payload != "hello" {
			t.Fatalf("message = %+v, %v; want hello", msg, err)
		}

		e.Version = 8
		if setErr, pubErr := s.SetAndPublish(ctx, key, e, command, channel, nil); setErr != nil || pubErr != nil {
			t.Fatalf("SetAndPublish without a message = %v, %v", setErr, pubErr)
		}
		if got, err := s.Get(ctx, key); err != nil || got.Version != 8 {
			t.Fatalf("Get after the write alone = %+v, %v", got, err)
		}
		if setErr, _ := s.SetAndPublish(ctx, "", e, command, channel, []byte("x")); !errors.Is(setErr, remote.ErrEmptyKey) {
			t.Errorf("SetAndPublish of an empty key = %v, want ErrEmptyKey", setErr)
		}
	})
}
