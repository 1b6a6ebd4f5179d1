package store

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// StoredPacket is a review's finished packet as kept in Redis: the document Bundle gzip-compressed (served as is to
// clients that accept gzip), with what is needed to answer conditional requests and check access without
// decompressing.
//
//	<prefix>{<review>}:packet   hash: id, provider, etag, created (ms), bundle (gzip), report (JSON)
type StoredPacket struct {
	ID       string
	ReviewID string
	Provider string
	ETag     string
	Created  time.Time
	// Gzip is the compressed Bundle.
	Gzip []byte
	// Report is the de-identification report (JSON, no PHI).
	Report []byte
}

// Bundle returns the decompressed Bundle.
func (p *StoredPacket) Bundle() ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(p.Gzip))
	if err != nil {
		return nil, fmt.Errorf("read packet: %w", err)
	}
	return io.ReadAll(zr)
}

// savePacketScript stores a packet once: a packet is immutable, so a second save (a re-delivered job) keeps the
// first.
var savePacketScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "id", ARGV[1], "provider", ARGV[2], "etag", ARGV[3], "created", ARGV[4], "bundle", ARGV[5], "report", ARGV[6])
redis.call("PEXPIREAT", KEYS[1], ARGV[7])
return 1`)

// SavePacket compresses and stores a review's packet until expires. It reports false when the review already had
// one (which is kept unchanged).
func (s *Store) SavePacket(ctx context.Context, p StoredPacket, bundle []byte, expires time.Time) (bool, error) {
	k, err := s.key("packet", p.ReviewID)
	if err != nil {
		return false, fmt.Errorf("save packet: %w", err)
	}
	if !expires.After(time.Now()) {
		return false, errors.New("save packet: already expired")
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	if _, err := zw.Write(bundle); err != nil {
		return false, fmt.Errorf("save packet: %w", err)
	}
	if err := zw.Close(); err != nil {
		return false, fmt.Errorf("save packet: %w", err)
	}
	n, err := savePacketScript.Run(ctx, s.rdb, []string{k}, p.ID, p.Provider, p.ETag, p.Created.UnixMilli(), z.Bytes(), p.Report, expires.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("save packet: %w", err)
	}
	return n == 1, nil
}

// GetPacket returns a review's packet, or ErrNotFound.
func (s *Store) GetPacket(ctx context.Context, reviewID string) (*StoredPacket, error) {
	k, err := s.key("packet", reviewID)
	if err != nil {
		return nil, fmt.Errorf("get packet: %w", err)
	}
	v, err := s.rdb.HMGet(ctx, k, "id", "provider", "etag", "created", "bundle", "report").Result()
	if err != nil {
		return nil, fmt.Errorf("get packet: %w", err)
	}
	if v[0] == nil {
		return nil, ErrNotFound
	}
	ms, _ := strconv.ParseInt(str(v[3]), 10, 64)
	return &StoredPacket{ID: str(v[0]), ReviewID: reviewID, Provider: str(v[1]), ETag: str(v[2]), Created: time.UnixMilli(ms).UTC(),
		Gzip: []byte(str(v[4])), Report: []byte(str(v[5]))}, nil
}

// DeletePacket removes a review's packet at once (withdrawal). Deleting a missing packet is not an error.
func (s *Store) DeletePacket(ctx context.Context, reviewID string) error {
	k, err := s.key("packet", reviewID)
	if err != nil {
		return fmt.Errorf("delete packet: %w", err)
	}
	if err := s.rdb.Del(ctx, k).Err(); err != nil {
		return fmt.Errorf("delete packet: %w", err)
	}
	return nil
}
