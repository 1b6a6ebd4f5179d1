// Package store keeps the gateway's shared state in Redis: one-time authorization state, sealed grants and
// cross-replica locks. It talks to Redis only through redis.UniversalClient, so one code path serves a single node,
// Sentinel and Cluster.
//
// # Key layout
//
// Every key starts with the Store's prefix. A key argument names an aggregate, then optionally "/" and a name inside
// it; the aggregate id (the part before the first "/") becomes the Redis Cluster hash tag, so all keys of one
// aggregate (a review: its grants and their locks) live in one slot and can later be used together in a transaction
// or script:
//
//	<prefix>{<aggregate>}:state[:<rest>]   one-time authorization state (PutState, TakeState)
//	<prefix>{<aggregate>}:grant[:<rest>]   a sealed grant (SaveGrant, LoadGrant, DeleteGrant)
//	<prefix>{<aggregate>}:lock[:<rest>]    a lock (Lock)
//
// For example, with prefix "sl:" the grant key "rev-42/hospital-a" is stored at "sl:{rev-42}:grant:hospital-a".
// Values are opaque bytes; the store never sees tokens in clear (callers seal them, see package seal).
//
// Interfaces that consume a Store are defined where they are used (package auth); this package imports none of them.
package store
