// Package storetest holds the conformance suite every Redis behind package store must pass: a real Redis server in
// CI and the embedded miniredis elsewhere, so the embedded one never hides a behaviour the real one lacks.
package storetest
