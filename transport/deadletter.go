package transport

import (
	"encoding/json"
	"fmt"
	"time"
)

// DeadLetter is an entry moved out of its stream because it can never be
// processed (undecodable, or failing too often), with why and where from, so
// that a person can look at it and replay it once the cause is fixed.
type DeadLetter struct {
	Stream     string    `json:"stream"` // where it came from
	ID         string    `json:"id"`     // its id there
	Group      string    `json:"group"`  // the group that gave up on it
	Reason     string    `json:"reason"`
	Deliveries int64     `json:"deliveries,omitempty"`
	Time       time.Time `json:"time"`
	Payload    []byte    `json:"payload"` // the original entry, base64 in JSON
}

// MarshalBinary encodes the dead letter as JSON, readable with redis-cli.
func (d DeadLetter) MarshalBinary() ([]byte, error) { return json.Marshal(d) }

// ParseDeadLetter decodes what MarshalBinary produced.
func ParseDeadLetter(b []byte) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("dead letter: %w", err)
	}
	if d.Stream == "" {
		return d, fmt.Errorf("dead letter: no original stream")
	}
	return d, nil
}
