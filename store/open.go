package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Open builds a UniversalClient from a redis:// or rediss:// URL and checks that the server answers:
//
//   - redis://[user:password@]host:port/db: a single node;
//   - with master_name=NAME (and more sentinels as addr=host:port): Sentinel failover, the host being a sentinel;
//   - with addr=host:port parameters and no master_name: a Cluster seeded with every address.
//
// Other parameters are go-redis options (dial_timeout, read_timeout, pool_size, ...). Errors never repeat the URL,
// which may hold a password.
func Open(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("open redis: invalid URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, errors.New("open redis: URL scheme must be redis or rediss")
	}
	q := u.Query()
	var client redis.UniversalClient
	switch {
	case q.Has("master_name"):
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, errors.New("open redis: invalid sentinel URL options")
		}
		client = redis.NewFailoverClient(opts)
	case q.Has("addr"):
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, errors.New("open redis: invalid cluster URL options")
		}
		client = redis.NewClusterClient(opts)
	default:
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, errors.New("open redis: invalid URL options")
		}
		client = redis.NewClient(opts)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("open redis: ping: %w", err)
	}
	return client, nil
}

// Embedded starts an in-process Redis (miniredis) on a loopback port and returns a client for it and the server,
// for tests and the demo. It is never the production store: it keeps everything in memory and its TTLs advance only
// through (*miniredis.Miniredis).FastForward. Close the client, then the server, when done.
func Embedded() (redis.UniversalClient, *miniredis.Miniredis, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return redis.NewClient(&redis.Options{Addr: mr.Addr()}), mr, nil
}
