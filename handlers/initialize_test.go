package handlers

import (
	"testing"

	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/session"
)

func TestClientInfoForDoctor(t *testing.T) {
	tests := []struct {
		name   string
		params protocol.InitializeParams
		want   session.ClientInfo
	}{
		{"the CLI is not an editor", protocol.InitializeParams{ClientInfo: protocol.ClientInfo{Name: "kloop-cli"}}, session.ClientInfo{}},
		{"name and version", protocol.InitializeParams{ClientInfo: protocol.ClientInfo{Name: "Neovim", Version: protocol.NewOptional("0.7.2")}},
			session.ClientInfo{Name: "Neovim", Version: "0.7.2"}},
		{"the extension's version", protocol.InitializeParams{ClientInfo: protocol.ClientInfo{Name: "Visual Studio Code", Version: protocol.NewOptional("1.96.0")},
			InitializationOptions: protocol.LSPAny(`{"extensionVersion":"0.4.0","other":1}`)},
			session.ClientInfo{Name: "Visual Studio Code", Version: "1.96.0", Extension: "0.4.0"}},
		{"options of another shape", protocol.InitializeParams{ClientInfo: protocol.ClientInfo{Name: "x"}, InitializationOptions: protocol.LSPAny(`[1]`)},
			session.ClientInfo{Name: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientInfo(&tt.params); got != tt.want {
				t.Errorf("clientInfo = %+v, want %+v", got, tt.want)
			}
		})
	}
}
