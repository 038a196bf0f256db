# ruby: string churn in the Ruby interpreter, modelled on the classic
# allocator suites' Ruby stress (rbstress): threads that build strings of
# random lengths, keep a share of them in a long-lived set that is replaced
# at random, and throw the rest away in chunks, so that Ruby's garbage
# collector frees them in sweeps, from whichever thread runs it (with two
# threads, half of those frees are of the other thread's blocks).
#
# Strings longer than an object slot's embedded capacity (23 bytes here)
# keep their bytes in a malloc'd buffer; array growth reallocs. Each thread
# checks its set's contents and byte count at the end. Usage:
#     ruby ruby_stress.rb THREADS STEPS
# Metric: ns_per_step (wall time of all threads over their total steps).

MAX_LEN = 200
KEEP = 20_000
CHUNK = 5_000

def fail(msg)
  warn "FAIL: #{msg}"
  exit 1
end

# One worker: STEPS allocations, about a third kept, the rest transient.
def work(id, steps)
  rng = Random.new(1000 + id)
  kept = []
  kept_bytes = 0
  chunk = []
  dropped = 0
  replaced = 0
  steps.times do
    len = rng.rand(MAX_LEN)
    s = (97 + len % 26).chr * len
    if rng.rand(3) == 0
      if kept.size < KEEP
        kept << s
      else
        slot = rng.rand(KEEP)
        kept_bytes -= kept[slot].bytesize
        kept[slot] = s
        replaced += 1
      end
      kept_bytes += len
    else
      chunk << s
      if chunk.size >= CHUNK
        dropped += chunk.size
        chunk = []
      end
    end
  end
  sum = 0
  kept.each do |k|
    n = k.bytesize
    fail("thread #{id}: a kept string changed") unless n.zero? || k == (97 + n % 26).chr * n
    sum += n
  end
  fail("thread #{id}: #{sum} kept bytes, expected #{kept_bytes}") unless sum == kept_bytes
  dropped + chunk.size + kept.size + replaced
end

threads = Integer(ARGV[0] || 1)
steps = Integer(ARGV[1] || 1_000_000)
fail("threads must be 1 or more") if threads < 1
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
counts = (0...threads).map { |i| Thread.new { work(i, steps) } }.map(&:value)
t1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
# Every step made one string: kept, replaced in the kept set, still in a
# chunk, or dropped with one.
counts.each_with_index do |c, i|
  fail("thread #{i}: #{c} strings accounted for, expected #{steps}") unless c == steps
end
puts format("metric ns_per_step %.4f ns", (t1 - t0) * 1e9 / (threads * steps))
puts "ok"
