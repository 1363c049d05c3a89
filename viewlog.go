package exraft

// What an operator reads first when a cluster waits: who leads, since when,
// and who this server follows. The Node does no I/O, so the driver logs the
// changes it publishes (logViewChange); a quiet cluster logs nothing.
// A server cut off from the others campaigns again and again, so its
// campaigns are at Debug; a change of leader is at Info, once each way.

// logViewChange logs what changed from the view was to the view now.
func (s *Server) logViewChange(was, now pubKey) {
	if now.role != was.role {
		s.logRoleChange(was, now)
	}
	if now.leader != was.leader && now.role != Leader {
		switch {
		case now.leader.Name != "":
			s.log.Info("following a leader", "leader", now.leader.Name, "addr", now.leader.Addr, "term", now.term)
		case was.leader.Name != "" && was.leader.Name != s.name:
			s.log.Info("no leader known", "term", now.term, "last_leader", was.leader.Name)
		}
	}
	if now.transferee != was.transferee && now.transferee != "" {
		s.log.Info("handing the leadership over", "to", now.transferee, "term", now.term)
	}
	if now.committedCfg != was.committedCfg && was.committedCfg != 0 {
		s.log.Info("membership committed", "members", s.committedMembers, "index", now.committedCfg)
	}
}

func (s *Server) logRoleChange(was, now pubKey) {
	switch {
	case now.role == Leader:
		s.log.Info("became the leader", "term", now.term)
	case was.role == Leader:
		s.log.Info("stepped down", "term", now.term)
	case now.role == Candidate:
		s.log.Debug("campaigning") // in a pre-vote, the term is not raised yet: none is named
	}
}
