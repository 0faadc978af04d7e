package bench

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/runtime"
)

// allReduceRanks returns the logical devices of the allreduce group's
// communicator, in rank order (Env.Ranks).
func (env Env) allReduceRanks() []int {
	if len(env.Ranks) == 0 {
		return []int{env.DevA, env.DevB}
	}
	return env.Ranks
}

// checkAllReduce reports why env cannot run the allreduce group, or nil.
func checkAllReduce(env Env) error {
	ranks := env.allReduceRanks()
	if len(ranks) < 2 {
		return fmt.Errorf("bench: the allreduce group needs at least two devices (Env.Ranks has %d)", len(ranks))
	}
	for r, d := range ranks {
		if d < 0 {
			return fmt.Errorf("bench: Env.Ranks: rank %d on device %d", r, d)
		}
		if i := slices.Index(ranks, d); i != r {
			return fmt.Errorf("bench: Env.Ranks: device %d is rank %d and rank %d", d, i, r)
		}
	}
	if env.NCCL == nil && env.PeerB.QUIC == "" {
		return errors.New("bench: the allreduce group needs Env.PeerB (its link bound) or Env.NCCL")
	}
	return nil
}

// rankServers groups ranks by the client's session that holds each
// rank's device (one per server, so one per worker), in order of first
// appearance.
func (r *runner) rankServers(ranks []int) ([][]int, error) {
	sessions := r.c.Stats().Sessions
	var groups [][]int
	index := make(map[int]int) // session -> its group
	for rank, d := range ranks {
		i := slices.IndexFunc(sessions, func(s runtime.SessionStats) bool { return slices.Contains(s.Devices, d) })
		if i < 0 {
			return nil, fmt.Errorf("rank %d: device %d has no session", rank, d)
		}
		g, ok := index[i]
		if !ok {
			g = len(groups)
			index[i] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], rank)
	}
	return groups, nil
}

// layoutName names the placement of ranks on servers: "SxD" for S
// servers with D ranks each, else the ranks per server joined by "+"
// ("2+1").
func layoutName(servers [][]int) string {
	counts := make([]string, len(servers))
	same := true
	for i, s := range servers {
		counts[i] = strconv.Itoa(len(s))
		same = same && len(s) == len(servers[0])
	}
	if same && len(servers) > 0 {
		return fmt.Sprintf("%dx%d", len(servers), len(servers[0]))
	}
	return strings.Join(counts, "+")
}

// allReduceSizes returns the group's sizes: each of sizes rounded down to
// whole float32 elements, in increasing order, without repeats, and
// those too small for one element.
func allReduceSizes(sizes []int64) (out, tooSmall []int64) {
	for _, n := range sizes {
		if n < 4 {
			tooSmall = append(tooSmall, n)
			continue
		}
		out = append(out, n/4*4)
	}
	slices.Sort(out)
	return slices.Compact(out), tooSmall
}

// busFactor is the ratio of bus bandwidth to algorithm bandwidth of an
// all-reduce over n ranks: 2(n-1)/n, the share of the data each rank's
// link carries in a ring.
func busFactor(n int) float64 { return 2 * float64(n-1) / float64(n) }

// algoName names the algorithm a communicator with zero options uses:
// XGPU_ALGO of this process, or auto.
func algoName() string {
	a, err := collective.ParseAlgo(os.Getenv(collective.EnvAlgo))
	if err != nil || a == collective.Auto {
		return "auto"
	}
	return a.String()
}

// allReduceGroup measures an in-place f32 sum all-reduce over the ranks
// of Env.Ranks against the link bound (two baseline peers pushing to each
// other at once, on the path the workers' link takes) or NCCL.
func (r *runner) allReduceGroup() error {
	ranks := r.env.allReduceRanks()
	servers, err := r.rankServers(ranks)
	if err != nil {
		return err
	}
	sizes, tooSmall := allReduceSizes(r.opt.Sizes)
	for _, n := range tooSmall {
		r.skip(GroupAllReduce+"/"+SizeName(n), "smaller than one float32")
	}
	if len(sizes) == 0 {
		return nil
	}
	largest := uint64(sizes[len(sizes)-1])

	comm, err := r.c.CommInit(ranks, runtime.CommOptions{})
	if err != nil {
		return err
	}
	defer comm.Destroy()
	bufs := make([]uint64, len(ranks))
	streams := make([]runtime.Stream, len(ranks))
	defer func() {
		for _, p := range bufs {
			if p != 0 {
				_ = r.c.Free(p)
			}
		}
		for _, s := range streams {
			if s.Handle() != 0 {
				_ = r.c.StreamDestroy(s)
			}
		}
	}()
	for i, d := range ranks {
		if bufs[i], err = r.c.Malloc(d, largest); err != nil {
			return err
		}
		if streams[i], err = r.c.StreamCreate(d, runtime.StreamNonBlocking, 0); err != nil {
			return err
		}
		// Zeros: every page written, and sums that stay exact and normal
		// however many rounds add them up.
		if err := r.c.MemsetAsync(bufs[i], 0, largest, streams[i]); err != nil {
			return err
		}
	}
	if err := r.syncStreams(streams); err != nil {
		return err
	}

	layout := layoutName(servers)
	xgpu := copyMethod{role: roleXGPU, name: fmt.Sprintf("ncclAllReduce in place, f32 sum, %d ranks on %d servers (%s), %s algorithm; "+
		"bus bandwidth, from issue on every rank's stream until every rank synchronized", len(ranks), len(servers), layout, algoName()),
		round: r.allReduceRound(comm, bufs, streams)}
	methods := []copyMethod{xgpu}
	linkRole := roleBaseline
	if r.env.NCCL != nil {
		methods = append(methods, copyMethod{role: roleBaseline,
			name: "NCCL all-reduce through torch.distributed on the same GPUs, one process per GPU, same operation; bus bandwidth",
			round: func(n int64, reps int) rateMethod {
				return r.rateOf(r.env.NCCL, NativeCommand{Op: NativeAllReduce, Count: reps, Bytes: n})
			}})
		linkRole = roleReference
	}
	switch {
	case len(servers) == 2 && r.env.PeerB.QUIC != "":
		link, err := r.linkBound(ranks)
		if err != nil {
			return err
		}
		link.role = linkRole
		methods = append(methods, link)
	case r.env.NCCL == nil:
		return fmt.Errorf("the link bound needs the ranks on two servers; they are on %d (%s)", len(servers), layout)
	default:
		r.skip(GroupAllReduce+"/link-bound", fmt.Sprintf("needs the ranks on two servers and Env.PeerB; they are on %d", len(servers)))
	}
	return r.sizedCases(GroupAllReduce, GroupAllReduce+"/"+layout+"/", sizes, methods, true, nil)
}

// allReduceRound returns the xgpu method of the group: reps all-reduces
// of n bytes issued back to back on every rank's stream, then every
// stream synchronized; its figure is the bus bandwidth.
func (r *runner) allReduceRound(comm *runtime.Comm, bufs []uint64, streams []runtime.Stream) func(n int64, reps int) rateMethod {
	bus := busFactor(len(bufs))
	return func(n int64, reps int) rateMethod {
		count := int(n / 4)
		return timed(float64(int64(reps)*n)*bus/1e9, func() error {
			for range reps {
				for rank, p := range bufs {
					if err := comm.AllReduce(rank, p, p, count, collective.F32, collective.Sum, streams[rank]); err != nil {
						return err
					}
				}
			}
			return r.syncStreams(streams)
		})
	}
}

// syncStreams synchronizes every stream of ss at once and returns when
// all are done.
func (r *runner) syncStreams(ss []runtime.Stream) error {
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Go(func() { errs[i] = r.c.StreamSynchronize(s) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// linkBound returns the link bound of an all-reduce whose ranks are on
// two servers: peer A pushes n bytes to peer B and peer B n bytes to peer
// A, both at once, as the two workers' link carries a ring's data in both
// directions; through a local lane when the workers' link uses one
// (Env.WorkerPath), over QUIC otherwise. Its figure is the bytes one
// direction moved per second.
func (r *runner) linkBound(ranks []int) (copyMethod, error) {
	if r.pcB == nil {
		pc, err := dialPeerQUIC(r.ctx, r.env.PeerB, nil)
		if err != nil {
			return copyMethod{}, err
		}
		r.pcB = pc
	}
	lane, name, err := r.linkPath(ranks, true)
	if err != nil {
		return copyMethod{}, err
	}
	return copyMethod{name: "link bound: " + name + ", both directions at once", round: func(n int64, reps int) rateMethod {
		return timed(float64(int64(reps)*n)/1e9, func() error {
			var errB error
			var wg sync.WaitGroup
			wg.Go(func() {
				for range reps {
					if errB = r.pcB.push(int(n), r.env.PeerA, lane); errB != nil {
						return
					}
				}
			})
			var errA error
			for range reps {
				if errA = r.pc.push(int(n), r.env.PeerB, lane); errA != nil {
					break
				}
			}
			wg.Wait()
			return errors.Join(errA, errB)
		})
	}}, nil
}
