using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>Which module calls a <see cref="ModuleTracer"/> records, and how many it keeps.</summary>
    public sealed class TracerOptions
    {
        /// <summary>Record only calls of the modules for which this holds (it sees <see cref="HookPoint.Path"/>, <see cref="HookPoint.Module"/>); null: all.</summary>
        public Func<HookPoint, bool>? Filter { get; init; }

        /// <summary>
        /// At most this many calls are kept (default 100,000); later calls are counted in
        /// <see cref="ModuleTracer.Dropped"/>, not recorded, so a tracer left open in a long loop stays bounded.
        /// </summary>
        public int MaxCalls { get; init; } = 100_000;

        /// <summary>Whether input and output shapes, dtypes, devices and grad flags are recorded (default true; off is cheaper).</summary>
        public bool RecordTensors { get; init; } = true;

        /// <summary>
        /// Whether backward timings per module are recorded (default false): while the tracer is open, every module
        /// call of the traced models whose input or output requires grad is routed through the backward-hooks
        /// concern's identity autograd nodes (as if a no-op full backward hook were registered on it, the way PyTorch's
        /// <c>register_full_backward_hook</c> wraps them), and each module's backward — from the moment the gradient
        /// reaches its outputs to the moment the gradients for its inputs are ready — is recorded as a
        /// <see cref="CallPhase.Backward"/> call on the backward track of the thread that ran it. Costs an autograd node
        /// per wrapped call (microseconds); modules none of whose inputs require grad (usually the model itself and its
        /// first layer) have no input node, so no backward span. See docs/tracing.md.
        /// </summary>
        public bool Backward { get; init; }

        /// <summary>The trace's name: the Chrome trace's process name (default <c>TorchHooks</c>).</summary>
        public string Name { get; init; } = "TorchHooks";
    }

    /// <summary>
    /// Records every module call of wrapped models while it is open — path, type, call index, parent and depth,
    /// thread, input and output shapes/dtypes/devices/requires_grad, start and duration, training flag and
    /// autocast state — on every thread. TorchHooks' counterpart of <c>torch.profiler.profile(record_shapes=True)</c>
    /// restricted to module scopes.
    /// </summary>
    /// <example>
    /// <code>
    /// using (var trace = model.Trace())
    /// {
    ///     using var y = model.call(x);
    ///     trace.Stop();
    ///     trace.WriteChromeTrace("trace.json");   // open in Perfetto or chrome://tracing
    /// }
    /// </code>
    /// </example>
    /// <remarks>
    /// <para>Calls are recorded as they begin (<see cref="ModuleCallRecord.Id"/> order) and completed when they end.
    /// Only calls that reach TorchHooks' call path are seen: modules of trees wrapped with <c>WithHooks()</c>,
    /// called through <c>call</c> (not <c>forward</c>).</para>
    /// <para>Memory is bounded by <see cref="TracerOptions.MaxCalls"/>; no tensor is referenced. Opening a tracer
    /// makes every call of every wrapped model take the full call path until it is disposed.</para>
    /// </remarks>
    public sealed class ModuleTracer : IDisposable
    {
        private readonly Func<HookPoint, bool>? _filter;
        private readonly HashSet<HookPoint>? _tree;
        private readonly int _max;
        private readonly bool _tensors;
        private readonly long _origin;
        private TraceStore _store = new(0);
        private int _recording;
        private readonly List<HookPoint> _nodes = new();                 // node table: CallEntry.Node - 1 indexes it
        private readonly Dictionary<HookPoint, int> _nodeIndex = new(ReferenceEqualityComparer.Instance);
        private List<TraceSpan> _spans = new();                           // offload loads, waits, reads ahead (SpanEvents)

        private ModuleTracer(TracerOptions options, HashSet<HookPoint>? tree)
        {
            if (options.MaxCalls <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.MaxCalls, "TracerOptions.MaxCalls must be at least 1 (it bounds the tracer's memory); the default is 100,000.");
            _filter = options.Filter;
            _tree = tree;
            _max = options.MaxCalls;
            _tensors = options.RecordTensors;
            RecordsBackward = options.Backward;
            Name = options.Name ?? "TorchHooks";
            _origin = Stopwatch.GetTimestamp();
            StartedAt = DateTimeOffset.UtcNow;
            _recording = 1;
            TracingConcern.Add(this);
        }

        /// <summary>Starts recording the module calls of every wrapped model (use <c>model.Trace()</c> for one model's).</summary>
        public static ModuleTracer Start(TracerOptions? options = null) => new(options ?? new TracerOptions(), null);

        /// <summary>Starts recording the calls of the modules of <paramref name="model"/>'s tree.</summary>
        internal static ModuleTracer Start(IHookedModule model, TracerOptions? options)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Trace() on a facade from WithHooks().");
            return new ModuleTracer(options ?? new TracerOptions(), new HashSet<HookPoint>(model.Tree.HookPoints(), ReferenceEqualityComparer.Instance));
        }

        /// <summary>The trace's name (the Chrome trace's process name).</summary>
        public string Name { get; }

        /// <summary>When the tracer started (wall clock).</summary>
        public DateTimeOffset StartedAt { get; }

        /// <summary>Whether calls are being recorded (until <see cref="Stop"/> or <see cref="Dispose"/>).</summary>
        public bool IsRecording => Volatile.Read(ref _recording) != 0;

        /// <summary>Whether backward timings are recorded (<see cref="TracerOptions.Backward"/>).</summary>
        public bool RecordsBackward { get; }

        /// <summary>How many calls were not recorded because <see cref="TracerOptions.MaxCalls"/> calls were kept already.</summary>
        public int Dropped => (int)Math.Min(int.MaxValue, Math.Max(0, Volatile.Read(ref _store).Reserved - _max));

        /// <summary>The recorded calls, in the order they began (a snapshot; calls still running have no outputs or duration yet).</summary>
        /// <remarks>Records are built from the trace's compact entries when read; a finished call's record is built once and reused.</remarks>
        public IReadOnlyList<ModuleCallRecord> Calls
        {
            get
            {
                var store = Volatile.Read(ref _store);
                long n = Math.Min(store.Reserved, _max);
                var list = new List<ModuleCallRecord>((int)n);
                for (long id = 0; id < n; id++)
                    if (store.TryRead(id, out var entry)) list.Add(store.Record(this, id, entry));
                return list;
            }
        }

        /// <summary>
        /// The spans of work recorded for the traced modules' calls besides the calls themselves (<see cref="TraceSpan"/>:
        /// offload loads, waits and reads ahead), in the order they ended (a snapshot; at most <see cref="TracerOptions.MaxCalls"/>).
        /// </summary>
        public IReadOnlyList<TraceSpan> Spans
        {
            get { lock (_nodes) return _spans.ToArray(); }
        }

        /// <summary>Records a span of work done on the calling thread for the module at <paramref name="path"/> (from <see cref="SpanEvents"/>).</summary>
        internal void RecordSpan(string name, string path, long bytes, long start, long end)
        {
            if (!IsRecording) return;
            var thread = Thread.CurrentThread;
            var span = new TraceSpan(this, name, path, bytes, thread.ManagedThreadId, thread.Name, start, end);
            lock (_nodes)
                if (_spans.Count < _max) _spans.Add(span);
        }

        /// <summary>The recorded calls of the module at <paramref name="path"/>.</summary>
        public IReadOnlyList<ModuleCallRecord> CallsOf(string path)
        {
            if (path is null) throw new ArgumentNullException(nameof(path), "Pass a module path such as \"layer1.0.conv1\"; the root is \"\".");
            var list = new List<ModuleCallRecord>();
            foreach (var c in Calls) if (c.Path == path) list.Add(c);
            return list;
        }

        /// <summary>Stops recording; the calls recorded so far stay readable.</summary>
        public void Stop()
        {
            if (Interlocked.Exchange(ref _recording, 0) == 0) return;
            TracingConcern.Remove(this);
            lock (_nodes)   // the model's nodes no longer point at this tracer: a stopped trace is kept alive by its owner only
                foreach (var node in _nodes)
                    if (node.TraceSeat is { } seat && ReferenceEquals(seat.Tracer, this))
                        Interlocked.CompareExchange(ref node.TraceSeat, null, seat);
        }

        /// <summary>Forgets the recorded calls (and the dropped count); recording goes on if it was on.</summary>
        public void Clear()
        {
            var store = Volatile.Read(ref _store);
            Volatile.Write(ref _store, new TraceStore(store.Generation + 1));
            lock (_nodes) _spans = new List<TraceSpan>();
        }

        /// <summary>Stops recording.</summary>
        public void Dispose() => Stop();

        /// <summary>The trace in Chrome's Trace Event Format (JSON; Perfetto and chrome://tracing open it): see <see cref="ChromeTrace"/>.</summary>
        public string ToChromeTrace() => ChromeTrace.ToJson(this);

        /// <summary>Writes <see cref="ToChromeTrace"/> to <paramref name="path"/>.</summary>
        public void WriteChromeTrace(string path)
        {
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("Pass a file path such as \"trace.json\".", nameof(path));
            using var stream = File.Create(path);
            ChromeTrace.Write(this, stream);
        }

        /// <summary>A flame-graph style picture of the recorded calls (one lane per thread).</summary>
        public Timeline ToTimeline() => new(this);

        internal TimeSpan Elapsed(long timestamp) => TimeSpan.FromTicks((long)((timestamp - _origin) * (double)TimeSpan.TicksPerSecond / Stopwatch.Frequency));

        /// <summary>Microseconds from the tracer's start to <paramref name="timestamp"/>.</summary>
        internal double Microseconds(long timestamp) => (timestamp - _origin) * 1e6 / Stopwatch.Frequency;

        /// <summary>The autocast dtypes in force for the forward of <paramref name="node"/>'s module: its precision policy, else the thread's state.</summary>
        internal static (torch.ScalarType? Cpu, torch.ScalarType? Cuda) AutocastFor(HookPoint node)
        {
            AutocastNative.EnsureBound();
            torch.ScalarType? cpu = AutocastNative.IsAutocastEnabled(DeviceType.CPU) ? AutocastNative.GetAutocastDtype(DeviceType.CPU) : null;
            torch.ScalarType? cuda = s_cuda && AutocastNative.IsAutocastEnabled(DeviceType.CUDA) ? AutocastNative.GetAutocastDtype(DeviceType.CUDA) : null;
            if (node.Precision is { } policy)
            {
                var dtype = policy.enabled ? policy.dtype ?? AutocastNative.GetAutocastDtype(policy.device_type) : (torch.ScalarType?)null;
                if (policy.device_type == DeviceType.CPU) cpu = dtype; else cuda = dtype;
            }
            return (cpu, cuda);
        }

        private static readonly bool s_cuda = torch.cuda.is_available();

        /// <summary>Whether calls of <paramref name="node"/>'s module are recorded (the model restriction and the filter).</summary>
        internal bool Wants(HookPoint node)
            => (_tree is null || _tree.Contains(node)) && (_filter is null || _filter(node));

        /// <summary>
        /// A call of <paramref name="frame"/>'s module begins: reserves its entry and writes it (no allocation unless a
        /// new chunk is due). <paramref name="parent"/> is this tracer's token for the innermost enclosing recorded
        /// call on the thread (-1: none). Returns the call's token, or -1 when it is dropped.
        /// </summary>
        internal long Begin<TArgs>(CallFrame frame, in TArgs args, long parent, long timestamp)
        {
            var store = Volatile.Read(ref _store);
            long id = store.ReserveCall();
            if (id >= _max) return -1;
            ref var e = ref store.Call(id);
            if (parent >= 0 && (int)(parent >> 32) == store.Generation)
            {
                e.ParentId = (int)parent;
                e.Depth = store.Call((int)parent).Depth + 1;
            }
            else { e.ParentId = -1; e.Depth = 0; }
            e.Start = timestamp;
            e.CallIndex = frame.CallIndex;
            e.Recompute = frame.IsRecomputation;
            e.Training = frame.Module.training;
            var (cpu, cuda) = AutocastFor(frame.Node);
            e.AutocastCpu = cpu is { } c ? (sbyte)c : (sbyte)-1;
            e.AutocastCuda = cuda is { } g ? (sbyte)g : (sbyte)-1;
            e.ThreadId = store.Thread();
            if (_tensors) store.Describe(args, out e.InputsAt, out e.InputCount);
            Volatile.Write(ref e.Node, NodeIndex(frame.Node) + 1);
            return ((long)store.Generation << 32) | id;
        }

        /// <summary>The index of <paramref name="node"/> in this tracer's node table (added on its first call).</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        private int NodeIndex(HookPoint node)
            => node.TraceSeat is { } seat && ReferenceEquals(seat.Tracer, this) ? seat.Index : AddNode(node);

        private int AddNode(HookPoint node)
        {
            int index;
            lock (_nodes)
            {
                if (!_nodeIndex.TryGetValue(node, out index))
                {
                    index = _nodes.Count;
                    _nodes.Add(node);
                    _nodeIndex.Add(node, index);
                }
            }
            node.TraceSeat = new TraceSeat(this, index);   // one tracer's seat at a time: the last tracer that saw the node
            return index;
        }

        internal HookPoint NodeAt(int node)
        {
            lock (_nodes) return _nodes[node - 1];
        }

        /// <summary>The call with <paramref name="token"/> ended (<paramref name="failed"/>: it threw; no outputs then).</summary>
        internal void End<TResult>(long token, in TResult result, long timestamp, bool failed)
        {
            var store = Volatile.Read(ref _store);
            if ((int)(token >> 32) != store.Generation) return;   // cleared since the call began
            ref var e = ref store.Call((int)token);
            if (_tensors && !failed) store.Describe(result, out e.OutputsAt, out e.OutputCount);
            e.Failed = failed;
            Volatile.Write(ref e.End, Math.Max(timestamp, e.Start + 1));
        }

        /// <summary>
        /// Records a backward pass through <paramref name="node"/>'s module on the calling thread: from
        /// <paramref name="start"/> (the gradient reached the module's outputs) to <paramref name="end"/> (the gradients
        /// for its inputs were ready), with the gradients' shapes when tensors are recorded.
        /// </summary>
        internal void RecordBackward(HookPoint node, int callIndex, long start, long end, Tensor?[]? gradInputs, Tensor?[]? gradOutputs)
        {
            if (!Wants(node)) return;
            var store = Volatile.Read(ref _store);
            long id = store.ReserveCall();
            if (id >= _max) return;
            ref var e = ref store.Call(id);
            e.ParentId = -1;
            e.Depth = 0;
            e.Start = start;
            e.CallIndex = callIndex;
            e.Training = node.Module.training;
            e.AutocastCpu = -1;
            e.AutocastCuda = -1;
            e.Backward = true;
            e.Recompute = false;
            e.ThreadId = store.Thread();
            if (_tensors)
            {
                store.Describe(gradOutputs, out e.InputsAt, out e.InputCount);
                store.Describe(gradInputs, out e.OutputsAt, out e.OutputCount);
            }
            e.End = Math.Max(end, start + 1);
            Volatile.Write(ref e.Node, NodeIndex(node) + 1);
        }

        /// <inheritdoc />
        public override string ToString() => $"ModuleTracer('{Name}', {Calls.Count} calls{(Dropped > 0 ? $", {Dropped} dropped" : "")}{(IsRecording ? ", recording" : "")})";
    }

    /// <summary>Tracing entry points on a wrapped model.</summary>
    public static partial class ModuleExtensions
    {
        /// <summary>
        /// Starts a <see cref="ModuleTracer"/> for the modules of this wrapped model:
        /// <c>using var trace = model.Trace(); model.call(x); trace.WriteChromeTrace("t.json");</c>.
        /// </summary>
        public static ModuleTracer Trace(this IHookedModule model, TracerOptions? options = null) => ModuleTracer.Start(model, options);
    }
}
