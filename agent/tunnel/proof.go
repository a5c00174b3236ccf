package tunnel

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// nonceSize is the length of each side's handshake challenge.
const nonceSize = 32

// Roles bind a proof to the side that made it, so the agent's proof can
// never be replayed as the client's.
const (
	roleAgent  = "kloop-tunnel-agent"
	roleClient = "kloop-tunnel-client"
)

// prove is HMAC-SHA256 over the role and both nonces, keyed by the
// intercept's token: only a holder of the token can make it, and it is good
// for this handshake only.
func prove(token, role string, clientNonce, agentNonce []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write(clientNonce)
	m.Write(agentNonce)
	return m.Sum(nil)
}

// proofValid checks a proof in constant time; an empty token proves nothing.
func proofValid(token, role string, clientNonce, agentNonce, got []byte) bool {
	if token == "" {
		return false
	}
	return hmac.Equal(got, prove(token, role, clientNonce, agentNonce))
}

func newNonce() ([]byte, error) {
	b := make([]byte, nonceSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("handshake nonce: %w", err)
	}
	return b, nil
}
