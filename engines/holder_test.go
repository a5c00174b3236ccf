package engines

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHolderIDIsKeptPerStateDir(t *testing.T) {
	dir := t.TempDir()
	first, err := HolderID(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := HolderID(dir)
	if err != nil || again != first {
		t.Fatalf("second read = %q, %v; want the same ID %q", again, err, first)
	}
	other, err := HolderID(t.TempDir())
	if err != nil || other == first {
		t.Fatalf("another installation's ID = %q, %v; want a different one than %q", other, err, first)
	}
	fi, err := os.Stat(filepath.Join(dir, holderIDFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("holder ID file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if err := os.WriteFile(filepath.Join(dir, holderIDFile), []byte("not hex!"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := HolderID(dir); err == nil || !strings.Contains(err.Error(), "remove the file") {
		t.Errorf("damaged ID: err = %v; want one that says how to fix it", err)
	}
}
