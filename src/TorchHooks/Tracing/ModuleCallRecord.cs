using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Text;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>Which pass a recorded module call belongs to.</summary>
    public enum CallPhase
    {
        /// <summary>The module's forward call (pre-hooks, forward, forward hooks).</summary>
        Forward,
        /// <summary>The module's backward (gradients flowing through it); recorded once backward hooks exist.</summary>
        Backward,
        /// <summary>The call run again in backward by activation checkpointing (the module or one inside a checkpointed module).</summary>
        Recompute,
    }

    /// <summary>
    /// What a trace knows about one tensor passed into or out of a module call: shape, dtype, device and
    /// <c>requires_grad</c> (PyTorch's profiler <c>record_shapes</c>, plus device and grad flag). No reference
    /// to the tensor is kept.
    /// </summary>
    public readonly struct TensorInfo : IEquatable<TensorInfo>
    {
        private readonly long[]? _shape;

        /// <summary>Describes <paramref name="tensor"/> as it is now.</summary>
        public TensorInfo(Tensor tensor)
        {
            if (tensor is null) throw new ArgumentNullException(nameof(tensor), "Pass a tensor to describe.");
            Span<long> sizes = stackalloc long[TensorNative.MaxRank];
            TensorNative.Read(tensor, out var header, sizes);
            if (header.Rank > TensorNative.MaxRank)
            {
                _shape = new long[header.Rank];
                TensorNative.Read(tensor, out header, _shape);
            }
            else _shape = sizes.Slice(0, header.Rank).ToArray();
            Dtype = header.Dtype;
            DeviceType = header.DeviceType;
            DeviceIndex = header.DeviceIndex;
            RequiresGrad = header.RequiresGrad;
        }

        /// <summary>A tensor as the tracer read it (<see cref="TensorSlot"/>).</summary>
        internal TensorInfo(in TensorHeader header, ReadOnlySpan<long> sizes)
        {
            _shape = sizes.ToArray();
            Dtype = header.Dtype;
            DeviceType = header.DeviceType;
            DeviceIndex = header.DeviceIndex;
            RequiresGrad = header.RequiresGrad;
        }

        /// <summary>The tensor's shape (an empty list for a scalar).</summary>
        public IReadOnlyList<long> Shape => _shape ?? Array.Empty<long>();
        /// <summary>The tensor's element type.</summary>
        public torch.ScalarType Dtype { get; }
        /// <summary>The device type the tensor lived on.</summary>
        public DeviceType DeviceType { get; }
        /// <summary>The device index (-1 for CPU).</summary>
        public int DeviceIndex { get; }
        /// <summary>Whether the tensor required gradients.</summary>
        public bool RequiresGrad { get; }

        /// <summary>The number of elements.</summary>
        public long Numel { get { long n = 1; foreach (var d in Shape) n *= d; return n; } }

        /// <summary>The bytes of the tensor's elements (<c>numel × element size</c>).</summary>
        public long Bytes => Numel * ElementSize(Dtype);

        /// <summary>The device as PyTorch prints it: <c>cpu</c>, <c>cuda:0</c>.</summary>
        public string Device => DeviceIndex < 0 ? DeviceType.ToString().ToLowerInvariant() : $"{DeviceType.ToString().ToLowerInvariant()}:{DeviceIndex}";

        /// <summary>The shape as torchinfo prints it: <c>[1, 64, 56, 56]</c>.</summary>
        public string ShapeText => FormatShape(Shape);

        /// <summary>The shape in torchinfo's notation.</summary>
        public static string FormatShape(IReadOnlyList<long> shape)
        {
            var sb = new StringBuilder("[");
            for (int i = 0; i < shape.Count; i++) { if (i > 0) sb.Append(", "); sb.Append(shape[i]); }
            return sb.Append(']').ToString();
        }

        /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
        public static int ElementSize(torch.ScalarType dtype) => dtype switch
        {
            torch.ScalarType.Byte or torch.ScalarType.Int8 or torch.ScalarType.Bool => 1,
            torch.ScalarType.Int16 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16 => 2,
            torch.ScalarType.Int32 or torch.ScalarType.Float32 => 4,
            torch.ScalarType.ComplexFloat32 or torch.ScalarType.Int64 or torch.ScalarType.Float64 => 8,
            torch.ScalarType.ComplexFloat64 => 16,
            _ => 4,
        };

        /// <summary>The tensors in a module's inputs or output: a tensor, or the tensors of a tuple or list, in order.</summary>
        internal static TensorInfo[] Describe<T>(T value)
        {
            switch (value)
            {
                case Tensor t: return t.IsInvalid ? Array.Empty<TensorInfo>() : new[] { new TensorInfo(t) };
                case ITuple tuple:
                {
                    var list = new List<TensorInfo>(tuple.Length);
                    for (int i = 0; i < tuple.Length; i++)
                        if (tuple[i] is Tensor ti && !ti.IsInvalid) list.Add(new TensorInfo(ti));
                    return list.ToArray();
                }
                case IEnumerable<Tensor> many:
                {
                    var list = new List<TensorInfo>();
                    foreach (var ti in many) if (ti is not null && !ti.IsInvalid) list.Add(new TensorInfo(ti));
                    return list.ToArray();
                }
                default: return Array.Empty<TensorInfo>();
            }
        }

        /// <inheritdoc />
        public bool Equals(TensorInfo other)
        {
            if (Dtype != other.Dtype || DeviceType != other.DeviceType || DeviceIndex != other.DeviceIndex || RequiresGrad != other.RequiresGrad) return false;
            var a = Shape; var b = other.Shape;
            if (a.Count != b.Count) return false;
            for (int i = 0; i < a.Count; i++) if (a[i] != b[i]) return false;
            return true;
        }

        /// <inheritdoc />
        public override bool Equals(object? obj) => obj is TensorInfo other && Equals(other);

        /// <inheritdoc />
        public override int GetHashCode() => HashCode.Combine(Dtype, DeviceType, DeviceIndex, RequiresGrad, Shape.Count);

        /// <inheritdoc />
        public override string ToString() => $"{ShapeText} {Dtype} {Device}{(RequiresGrad ? " requires_grad" : "")}";
    }

    /// <summary>
    /// One recorded module call: where it sits in the call tree, what went in and came out, when it ran, in
    /// which mode. Produced by a <see cref="ModuleTracer"/>; immutable once the call has finished.
    /// </summary>
    /// <remarks>
    /// <see cref="Id"/> numbers the calls a tracer recorded in the order they began (0, 1, …); <see cref="ParentId"/>
    /// is the id of the innermost enclosing recorded call on the same thread (calls the tracer's filter left out
    /// are skipped over), -1 for a root. Times are measured with <see cref="System.Diagnostics.Stopwatch"/> from the
    /// moment the tracer started.
    /// </remarks>
    public sealed class ModuleCallRecord
    {
        internal ModuleCallRecord(ModuleTracer tracer, int id, in CallEntry e, HookPoint node, string? threadName, TensorInfo[] inputs, TensorInfo[] outputs)
        {
            Id = id; ParentId = e.ParentId; Depth = e.Depth; Path = node.Path; ModuleType = node.TypeName; CallIndex = e.CallIndex;
            ThreadId = e.ThreadId; ThreadName = threadName; Inputs = inputs; Outputs = outputs; Training = e.Training;
            AutocastCpu = e.AutocastCpu < 0 ? null : (torch.ScalarType)e.AutocastCpu;
            AutocastCuda = e.AutocastCuda < 0 ? null : (torch.ScalarType)e.AutocastCuda;
            StartTimestamp = e.Start; EndTimestamp = e.End; Failed = e.Failed;
            Phase = e.Backward ? CallPhase.Backward : e.Recompute ? CallPhase.Recompute : CallPhase.Forward;
            Tracer = tracer;
        }

        /// <summary>The call's number in its trace, in the order calls began (0, 1, …).</summary>
        public int Id { get; }
        /// <summary>The id of the enclosing recorded call on the same thread, or -1 for a root call.</summary>
        public int ParentId { get; }
        /// <summary>Nesting depth among recorded calls (a root call is 0).</summary>
        public int Depth { get; }
        /// <summary>The module's path in its wrapped tree, as in <c>named_modules()</c> (the root is <c>""</c>).</summary>
        public string Path { get; }
        /// <summary>The module's class name, e.g. <c>Conv2d</c>.</summary>
        public string ModuleType { get; }
        /// <summary>0 for the module's first call in the current outermost call, 1 for the second, … (as <see cref="ModuleCallInfo.CallIndex"/>).</summary>
        public int CallIndex { get; }
        /// <summary>The managed thread the call ran on (<see cref="Environment.CurrentManagedThreadId"/>).</summary>
        public int ThreadId { get; }
        /// <summary>The thread's name, if it had one.</summary>
        public string? ThreadName { get; }
        /// <summary>The tensors passed in (the module's inputs as its caller passed them, before pre-hooks).</summary>
        public IReadOnlyList<TensorInfo> Inputs { get; }
        /// <summary>The tensors returned (after forward hooks); empty until the call finished, and for a failed call.</summary>
        public IReadOnlyList<TensorInfo> Outputs { get; }
        /// <summary>The module's <c>training</c> flag during the call.</summary>
        public bool Training { get; }
        /// <summary>The CPU autocast dtype in force for the module's forward (the module's precision policy, else the enclosing region's), or null when CPU autocast was off.</summary>
        public torch.ScalarType? AutocastCpu { get; }
        /// <summary>The CUDA autocast dtype in force for the module's forward, or null when CUDA autocast was off.</summary>
        public torch.ScalarType? AutocastCuda { get; }
        /// <summary>Forward, or backward (backward records come from the backward-hooks concern).</summary>
        public CallPhase Phase { get; }
        /// <summary>Whether the call threw (forward, a hook or a step), or was abandoned by an exception.</summary>
        public bool Failed { get; }
        /// <summary>Whether the call has finished (returned or failed).</summary>
        public bool Finished => EndTimestamp != 0;

        internal long StartTimestamp { get; }
        internal long EndTimestamp { get; }
        internal ModuleTracer Tracer { get; }

        /// <summary>When the call began, from the start of the trace.</summary>
        public TimeSpan Start => Tracer.Elapsed(StartTimestamp);

        /// <summary>How long the call took (zero while it is still running).</summary>
        public TimeSpan Duration => EndTimestamp == 0 ? TimeSpan.Zero : TimeSpan.FromTicks((long)((EndTimestamp - StartTimestamp) * (double)TimeSpan.TicksPerSecond / System.Diagnostics.Stopwatch.Frequency));

        /// <inheritdoc />
        public override string ToString()
            => $"#{Id} {new string(' ', 2 * Depth)}{(Path.Length == 0 ? "<root>" : Path)} ({ModuleType}) call {CallIndex} {Phase}: {string.Join(", ", Inputs)} -> {string.Join(", ", Outputs)}";
    }
}
