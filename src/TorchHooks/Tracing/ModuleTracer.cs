using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>Which module calls a <see cref="ModuleTracer"/> records, and how many it keeps.</summary>
    public sealed class TraceOptions
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
    /// <para>Memory is bounded by <see cref="TraceOptions.MaxCalls"/>; no tensor is referenced. Opening a tracer
    /// makes every call of every wrapped model take the full call path until it is disposed.</para>
    /// </remarks>
    public sealed class ModuleTracer : IDisposable
    {
        private readonly object _gate = new();
        private readonly List<ModuleCallRecord> _calls = new();
        private readonly Func<HookPoint, bool>? _filter;
        private readonly HashSet<HookPoint>? _tree;
        private readonly int _max;
        private readonly bool _tensors;
        private readonly long _origin;
        private int _dropped;
        private int _reserved;
        private int _recording;
        private readonly Observer _observer;

        /// <summary>The tracer's seat on the call path (CallObserver is internal; the tracer is public).</summary>
        private sealed class Observer : CallObserver
        {
            public readonly ModuleTracer Tracer;
            public Observer(ModuleTracer tracer) => Tracer = tracer;
            public override bool Wants(HookPoint node) => Tracer.Wants(node);
            public override object? Begin(CallFrame frame, object? args, object? parentToken, long timestamp) => Tracer.Begin(frame, args, parentToken, timestamp);
            public override void End(object token, object? args, object? result, long timestamp, bool failed) => Tracer.End(token, result, timestamp, failed);
        }

        internal static ModuleTracer? Of(CallObserver observer) => (observer as Observer)?.Tracer;

        private ModuleTracer(TraceOptions options, HashSet<HookPoint>? tree)
        {
            if (options.MaxCalls <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.MaxCalls, "TraceOptions.MaxCalls must be at least 1 (it bounds the tracer's memory); the default is 100,000.");
            _filter = options.Filter;
            _tree = tree;
            _max = options.MaxCalls;
            _tensors = options.RecordTensors;
            Name = options.Name ?? "TorchHooks";
            _origin = Stopwatch.GetTimestamp();
            StartedAt = DateTimeOffset.UtcNow;
            _recording = 1;
            _observer = new Observer(this);
            TracingConcern.Add(_observer);
        }

        /// <summary>Starts recording the module calls of every wrapped model (use <c>model.Trace()</c> for one model's).</summary>
        public static ModuleTracer Start(TraceOptions? options = null) => new(options ?? new TraceOptions(), null);

        /// <summary>Starts recording the calls of the modules of <paramref name="model"/>'s tree.</summary>
        internal static ModuleTracer Start(IHookedModule model, TraceOptions? options)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Trace() on a facade from WithHooks().");
            return new ModuleTracer(options ?? new TraceOptions(), new HashSet<HookPoint>(model.Tree.HookPoints(), ReferenceEqualityComparer.Instance));
        }

        /// <summary>The trace's name (the Chrome trace's process name).</summary>
        public string Name { get; }

        /// <summary>When the tracer started (wall clock).</summary>
        public DateTimeOffset StartedAt { get; }

        /// <summary>Whether calls are being recorded (until <see cref="Stop"/> or <see cref="Dispose"/>).</summary>
        public bool IsRecording => Volatile.Read(ref _recording) != 0;

        /// <summary>How many calls were not recorded because <see cref="TraceOptions.MaxCalls"/> calls were kept already.</summary>
        public int Dropped => Volatile.Read(ref _dropped);

        /// <summary>The recorded calls, in the order they began (a snapshot; calls still running have no outputs or duration yet).</summary>
        public IReadOnlyList<ModuleCallRecord> Calls
        {
            get { lock (_gate) return _calls.ToArray(); }
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
            if (Interlocked.Exchange(ref _recording, 0) != 0) TracingConcern.Remove(_observer);
        }

        /// <summary>Forgets the recorded calls (and the dropped count); recording goes on if it was on.</summary>
        public void Clear()
        {
            lock (_gate)
            {
                _calls.Clear();
                _reserved = 0;
                _dropped = 0;
            }
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

        private bool Wants(HookPoint node)
            => (_tree is null || _tree.Contains(node)) && (_filter is null || _filter(node));

        private object? Begin(CallFrame frame, object? args, object? parentToken, long timestamp)
        {
            if (Interlocked.Increment(ref _reserved) > _max)
            {
                Interlocked.Decrement(ref _reserved);
                Interlocked.Increment(ref _dropped);
                return null;
            }
            var parent = parentToken as ModuleCallRecord;
            var module = frame.Module;
            var (cpu, cuda) = AutocastFor(frame.Node);
            var thread = Thread.CurrentThread;
            var inputs = _tensors ? TensorInfo.Describe(args) : Array.Empty<TensorInfo>();
            lock (_gate)
            {
                var record = new ModuleCallRecord(_calls.Count, parent?.Id ?? -1, parent is null ? 0 : parent.Depth + 1, frame.Node, module, frame.CallIndex,
                    thread.ManagedThreadId, thread.Name, inputs, module.training, cpu, cuda, timestamp, CallPhase.Forward) { Tracer = this };
                _calls.Add(record);
                return record;
            }
        }

        private void End(object token, object? result, long timestamp, bool failed)
        {
            var record = (ModuleCallRecord)token;
            record.Finish(timestamp, _tensors && !failed ? TensorInfo.Describe(result) : Array.Empty<TensorInfo>(), failed);
        }

        internal void RecordBackward(HookPoint node, torch.nn.Module module, int callIndex, long start, long end,
            IReadOnlyList<TensorInfo>? gradInputs, IReadOnlyList<TensorInfo>? gradOutputs)
        {
            if (!Wants(node)) return;
            if (Interlocked.Increment(ref _reserved) > _max)
            {
                Interlocked.Decrement(ref _reserved);
                Interlocked.Increment(ref _dropped);
                return;
            }
            var thread = Thread.CurrentThread;
            lock (_gate)
            {
                var record = new ModuleCallRecord(_calls.Count, -1, 0, node, module, callIndex, thread.ManagedThreadId, thread.Name,
                    gradOutputs is null ? Array.Empty<TensorInfo>() : new List<TensorInfo>(gradOutputs).ToArray(), module.training, null, null, start, CallPhase.Backward) { Tracer = this };
                record.Finish(end, gradInputs is null ? Array.Empty<TensorInfo>() : new List<TensorInfo>(gradInputs).ToArray(), false);
                _calls.Add(record);
            }
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
        public static ModuleTracer Trace(this IHookedModule model, TraceOptions? options = null) => ModuleTracer.Start(model, options);
    }
}
