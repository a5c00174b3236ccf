package command

import "encoding/json"

//go:generate env KLOOP_UPDATE_COMMANDS=1 go test -run TestCommandsJSONUpToDate .

// ManifestEntry is one command as editors list it.
type ManifestEntry struct {
	Name     string          `json:"name"`
	Title    string          `json:"title"`
	Example  json.RawMessage `json:"example"`
	Progress bool            `json:"progress,omitempty"`
}

// Manifest is the command list editors derive their own from
// (extensions/commands.json): the VS Code palette entries NAME.ui and the
// Neovim plugin's commands are checked against it.
func Manifest() ([]byte, error) {
	var list []ManifestEntry
	for _, c := range All() {
		ex := c.Example()
		if !json.Valid([]byte(ex)) {
			// A prose example ("{…} or {…}") stays a string.
			b, err := json.Marshal(ex)
			if err != nil {
				return nil, err
			}
			ex = string(b)
		}
		list = append(list, ManifestEntry{Name: c.Name(), Title: c.Title(), Example: json.RawMessage(ex), Progress: c.Progress()})
	}
	out, err := json.MarshalIndent(map[string]any{
		"//":       "Generated from package command by `go generate ./command`; do not edit.",
		"commands": list,
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
