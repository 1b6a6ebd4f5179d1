// Package e2e holds the tests that run the built secondlook binary as separate processes around one Redis server of
// their own: several gateway replicas sharing nothing but Redis, a worker killed with SIGKILL in the middle of an
// assembly, and Redis itself killed and restarted from its append-only file in the middle of a flow. It has no
// code besides its tests; see docs/operations.md for what they prove.
package e2e
