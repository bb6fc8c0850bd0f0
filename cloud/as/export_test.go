package as

import "time"

// ForceSessionIDs makes s draw its session ID candidates from draw, checks
// a batch of them at once and waits until they are in its pool: tests use
// it to force a collision with a live session.
func ForceSessionIDs(s *Service, draw func() uint32) {
	s.ids.mu.Lock()
	s.ids.draw, s.ids.ids, s.ids.filling = draw, nil, true
	s.ids.mu.Unlock()
	s.refillIDs()
	for {
		s.ids.mu.Lock()
		done := !s.ids.filling
		s.ids.mu.Unlock()
		if done {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
