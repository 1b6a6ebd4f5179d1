package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// Sealer encrypts records at rest (seal.Keyring satisfies it). aad binds a sealed value to its key, so a value
// copied under another key does not open.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// SealRecords makes the store encrypt what it keeps about patients — review requests (the clinical question, patient
// ids at sources) and consents — with k. Values written before are still read.
func (s *Store) SealRecords(k Sealer) { s.sealer = k }

// sealedPrefix marks a sealed value; plain JSON starts with '{'.
var sealedPrefix = []byte("sealed:")

func (s *Store) sealValue(plain []byte, aad string) ([]byte, error) {
	if s.sealer == nil {
		return plain, nil
	}
	sealed, err := s.sealer.Seal(plain, []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("seal record: %w", err)
	}
	return append(append([]byte{}, sealedPrefix...), sealed...), nil
}

func (s *Store) openValue(stored []byte, aad string) ([]byte, error) {
	rest, ok := bytes.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	if s.sealer == nil {
		return nil, errors.New("open record: sealed, and no key to open it")
	}
	plain, err := s.sealer.Open(rest, []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("open record: %w", err)
	}
	return plain, nil
}

// PutPrivateState is PutState for values that say something about a patient: sealed when records are sealed.
func (s *Store) PutPrivateState(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	sealed, err := s.sealValue(value, "state:"+key)
	if err != nil {
		return err
	}
	return s.PutState(ctx, key, sealed, ttl)
}

// TakePrivateState is TakeState for values written by PutPrivateState.
func (s *Store) TakePrivateState(ctx context.Context, key string) ([]byte, error) {
	v, err := s.TakeState(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.openValue(v, "state:"+key)
}
