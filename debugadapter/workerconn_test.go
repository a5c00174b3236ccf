package debugadapter

import "testing"

// TestTakeSwallowsDuplicates: Delve answers a failed restart twice and may answer a
// request again after a recovered panic. The editor must see one answer per request;
// the bridge must see every answer to its own requests.
func TestTakeSwallowsDuplicates(t *testing.T) {
	own := make(chan reply, 4)
	wc := &workerConn{pending: map[int]pendingRequest{
		1: {editorSeq: 17},
		2: {replies: own},
	}}
	tests := []struct {
		requestSeq    int
		wantOK        bool
		wantEditorSeq int
		wantOwn       bool
	}{
		{requestSeq: 1, wantOK: true, wantEditorSeq: 17},
		{requestSeq: 1, wantOK: false}, // duplicate: dropped
		{requestSeq: 2, wantOK: true, wantOwn: true},
		{requestSeq: 2, wantOK: true, wantOwn: true}, // restart's second answer still reaches the bridge
		{requestSeq: 99, wantOK: false},
	}
	for i, tt := range tests {
		p, ok := wc.take(tt.requestSeq)
		editorSeq, replies := p.editorSeq, p.replies
		if ok != tt.wantOK || (ok && !tt.wantOwn && editorSeq != tt.wantEditorSeq) || (replies != nil) != tt.wantOwn {
			t.Errorf("step %d take(%d) = %d, %v, %v", i, tt.requestSeq, editorSeq, replies != nil, ok)
		}
	}
}
