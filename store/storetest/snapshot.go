package storetest

import (
	"context"
	"fmt"
	"sort"

	"secondlook/store"
)

// Snapshot describes everything under a store's prefix: each key with its type and size (length, members, entries).
// Two snapshots taken around a request that must be refused show whether it stored anything, even half-way: a
// review without its index, an audit entry, a queue entry. Rate buckets are left out: they count a caller's
// requests, refused ones too, and hold nothing a request stored.
func Snapshot(ctx context.Context, st *store.Store) (map[string]string, error) {
	rdb := st.Client()
	keys, err := Keys(ctx, rdb, st.Prefix()+"*")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if st.IsRateKey(k) {
			continue
		}
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			return nil, err
		}
		var size int64
		switch typ {
		case "string":
			size, err = rdb.StrLen(ctx, k).Result()
		case "hash":
			size, err = rdb.HLen(ctx, k).Result()
		case "set":
			size, err = rdb.SCard(ctx, k).Result()
		case "zset":
			size, err = rdb.ZCard(ctx, k).Result()
		case "stream":
			size, err = rdb.XLen(ctx, k).Result()
		case "list":
			size, err = rdb.LLen(ctx, k).Result()
		}
		if err != nil {
			return nil, err
		}
		out[k] = fmt.Sprintf("%s/%d", typ, size)
	}
	return out, nil
}

// Changes lists the keys that differ between two snapshots, sorted: added, changed in size, or removed.
func Changes(before, after map[string]string) []string {
	var changed []string
	for k, v := range after {
		if before[k] != v {
			changed = append(changed, k+" "+before[k]+" → "+v)
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok {
			changed = append(changed, k+" "+v+" → removed")
		}
	}
	sort.Strings(changed)
	return changed
}
