package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"secondlook/store"
	"secondlook/store/storetest"
)

func TestConformanceRealRedis(t *testing.T) {
	storetest.RunConformance(t, storetest.RealRedis)
}

func TestConformanceEmbeddedRedis(t *testing.T) {
	storetest.RunConformance(t, storetest.EmbeddedRedis)
}

func TestOpenErrorsDoNotLeakURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	for _, u := range []string{
		"redis://user:s3cr3t-pw@127.0.0.1:1/0",            // nothing listens
		"http://user:s3cr3t-pw@127.0.0.1:6379",            // wrong scheme
		"redis://user:s3cr3t-pw@127.0.0.1:6379/0?bogus=1", // unknown option
		"redis://user:s3cr3t-pw@[::1",                     // unparsable
	} {
		_, err := store.Open(ctx, u)
		if err == nil {
			t.Fatalf("Open accepted %q", u)
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Fatalf("error leaks the password: %v", err)
		}
	}
}

func TestNewRejectsBracesInPrefix(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted a prefix with a hash tag")
		}
	}()
	store.New(nil, "a{b}:")
}
