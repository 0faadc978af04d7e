package collective

// hierAllReduce reduces inside each host to its leader (its lowest rank),
// runs a ring all-reduce among the leaders (one per host, so only they
// cross the network), and broadcasts the result inside each host. Inside a
// host the chains run over the host's local path (NVLink peer copies on
// GPUs); each phase is chunked and pipelined.
func (o *task) hierAllReduce(send, recv []byte, count int) error {
	tp := &o.c.topo
	h := tp.hostOf[o.c.rank]
	local, li := tp.hosts[h], tp.local[o.c.rank]
	if err := o.chainReduce(local, 0, li, send, recv, count, 0, phLocalUp); err != nil {
		return err
	}
	if li == 0 {
		// The leader's recv holds its host's sum; reduce it in place.
		if err := o.ringAllReduce(tp.leader, h, recv, recv, count, o.avgDiv(), phLeaderRS, phLeaderAG); err != nil {
			return err
		}
	}
	return o.chainBroadcast(local, 0, li, recv, recv, count, phLocalDown)
}
