package engines

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// holderIDFile is where a kloop installation keeps its holder ID.
const holderIDFile = "holder-id"

// HolderID returns this installation's holder ID, kept in stateDir and
// created on first use: random, so two machines (or devcontainers) with the
// same user@host never adopt each other's intercepts.
func HolderID(stateDir string) (string, error) {
	path := filepath.Join(stateDir, holderIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); validHolderID(id) {
			return id, nil
		}
		return "", fmt.Errorf("holder ID in %s is damaged (%d bytes); remove the file and kloop makes a new one (intercepts held under the old ID are then left with `kloop leave --all`)", path, len(b))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read holder ID: %w", err)
	}
	raw := make([]byte, 12)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("new holder ID: %w", err)
	}
	id := hex.EncodeToString(raw)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", fmt.Errorf("new holder ID: %w", err)
	}
	// O_EXCL: two daemons starting at once agree on the first one's ID.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return HolderID(stateDir)
	}
	if err != nil {
		return "", fmt.Errorf("new holder ID: %w", err)
	}
	_, werr := f.WriteString(id + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("write holder ID %s: %w", path, err)
	}
	return id, nil
}

func validHolderID(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}
