using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// A custom autograd node whose backward is a <see cref="GradientSite"/>: PyTorch's <c>BackwardHookFunction</c>
    /// (torch/nn/modules/_functions.py) when the outputs are the inputs (<see cref="Identity(GradientSite, ReadOnlySpan{Tensor}, Span{Tensor})"/>),
    /// or any <c>autograd.Function</c> whose forward the caller has already computed (<see cref="Apply"/>). One node per
    /// call carries every tensor. Internal API for TorchHooks' concerns (backward hooks; reusable by any concern that needs
    /// a node of its own, e.g. activation checkpointing).
    /// </summary>
    /// <remarks>
    /// <para>Built on LibTorchSharp's <c>CSharpNode</c> exports (<see cref="AutogradNative"/>), as TorchSharp's
    /// <c>autograd.Function</c> is, minus its per-apply managed machinery: no context object, saved-data dictionary,
    /// lists, finalizers, new delegates or <c>empty_like</c> copy of every output (TorchSharp keeps one per output only to
    /// materialize zeros). The native node calls back through a delegate that has no user-data argument, so each live
    /// node needs its own function pointer: those come from a pool of slots, each a pair of delegates marshalled once and
    /// kept for the process; a slot returns to the pool when libtorch destroys its node.</para>
    /// <para>Facts it relies on (TorchSharp 0.107 <c>THSAutograd.cpp</c>): undefined output gradients arrive as null
    /// handles and are passed on as <c>null</c> (PyTorch's None; no <c>zeros_like</c>, which could touch a tensor a
    /// <c>DisposeScope</c> has disposed); an exception escaping the callback would cross a reverse P/Invoke and abort
    /// the process, so the callback never throws — a site's exception is stashed (<see cref="BackwardHookFailures"/>)
    /// and the gradients pass through unchanged; the gradient handles handed to the callback and the ones it returns are
    /// copied by libtorch after it returns, so they are disposed later (<see cref="PendingGradients"/>).</para>
    /// <para>Only tensors that require grad should be routed through it (a non-requires-grad tensor would come out
    /// requiring grad, unlike PyTorch's <c>mark_non_differentiable</c>).</para>
    /// </remarks>
    internal static unsafe class AutogradNode
    {
        /// <summary>
        /// Routes <paramref name="tensors"/> through one identity node whose backward calls <paramref name="site"/>:
        /// <paramref name="results"/>[i] is a view of <paramref name="tensors"/>[i] (libtorch's <c>view_as</c>, as in PyTorch).
        /// </summary>
        public static void Identity(GradientSite site, ReadOnlySpan<Tensor> tensors, Span<Tensor> results) => Apply(site, tensors, tensors, results);

        /// <summary>As <see cref="Identity(GradientSite, ReadOnlySpan{Tensor}, Span{Tensor})"/>; returns the views.</summary>
        public static Tensor[] Identity(GradientSite site, Tensor[] tensors)
        {
            var results = new Tensor[tensors.Length];
            Apply(site, tensors, tensors, results);
            return results;
        }

        /// <summary>
        /// One node with <paramref name="inputs"/> as its inputs and <paramref name="outputs"/> (computed by the caller,
        /// typically without grad) as its outputs; <paramref name="results"/> receives the outputs as the node's outputs.
        /// In backward, <paramref name="site"/> gets one gradient per output and returns one per input.
        /// </summary>
        /// <exception cref="ArgumentException">The spans' lengths do not fit.</exception>
        public static void Apply(GradientSite site, ReadOnlySpan<Tensor> inputs, ReadOnlySpan<Tensor> outputs, Span<Tensor> results)
        {
            if (site is null) throw new ArgumentNullException(nameof(site));
            if (results.Length != outputs.Length) throw new ArgumentException($"results must have one entry per output ({outputs.Length}), got {results.Length}.", nameof(results));
            if (inputs.Length == 0 || outputs.Length == 0) throw new ArgumentException("A node needs at least one input and one output tensor.", nameof(inputs));
            AutogradNative.EnsureBound();
            int n = inputs.Length, m = outputs.Length;
            IntPtr* ins = stackalloc IntPtr[n <= 32 ? n : 0];
            IntPtr* outs = stackalloc IntPtr[m <= 32 ? m : 0];
            IntPtr heapIn = IntPtr.Zero, heapOut = IntPtr.Zero;
            if (n > 32) ins = (IntPtr*)(heapIn = (IntPtr)NativeMemory.Alloc((nuint)n, (nuint)IntPtr.Size));
            if (m > 32) outs = (IntPtr*)(heapOut = (IntPtr)NativeMemory.Alloc((nuint)m, (nuint)IntPtr.Size));
            try
            {
                for (int i = 0; i < n; i++) ins[i] = inputs[i].Handle;
                for (int i = 0; i < m; i++) outs[i] = outputs[i].Handle;
                var slot = Slot.Rent(site, n);
                var node = AutogradNative.Ctor(slot.ApplyPtr, slot.DeletePtr);
                try { AutogradNative.Check(); }
                catch { slot.Release(); throw; }
                slot.Node = node;
                // From here libtorch owns the node: dropping our shared_ptr (finally) destroys it if no output took it,
                // which returns the slot through its delete callback. The slot is not touched after that.
                try
                {
                    var insArray = new AutogradNative.TensorArray { Array = (IntPtr)ins, Size = n };
                    AutogradNative.SetNextEdges(node, insArray, 1);
                    AutogradNative.Check();
                    AutogradNative.ClearInputMetadata(node);
                    AutogradNative.Check();
                    t_allocated = 0;
                    var none = new AutogradNative.TensorArray { Array = IntPtr.Zero, Size = 0 };
                    AutogradNative.WrapOutputs(insArray, none, none, new AutogradNative.TensorArray { Array = (IntPtr)outs, Size = m }, node, &Allocate);
                    AutogradNative.Check();
                    if ((int)t_allocated != m) throw new InvalidOperationException($"libtorch wrapped {t_allocated} outputs, expected {m}.");
                    for (int i = 0; i < m; i++) results[i] = torch.Tensor.UnsafeCreateTensor(t_results[i]);
                }
                finally
                {
                    AutogradNative.DisposeShared(node);
                    AutogradNative.Check();
                }
            }
            finally
            {
                if (heapIn != IntPtr.Zero) NativeMemory.Free((void*)heapIn);
                if (heapOut != IntPtr.Zero) NativeMemory.Free((void*)heapOut);
            }
        }

        // ---- the wrapped outputs: libtorch asks for an array of handles, filled before it returns ----

        [ThreadStatic] private static IntPtr* t_results;
        [ThreadStatic] private static int t_resultsCapacity;
        [ThreadStatic] private static nuint t_allocated;

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static IntPtr Allocate(nuint length)
        {
            t_allocated = length;
            return (IntPtr)Buffer(ref t_results, ref t_resultsCapacity, (int)length);
        }

        /// <summary>A per-thread native array of at least <paramref name="length"/> handles (grown, never shrunk).</summary>
        private static IntPtr* Buffer(ref IntPtr* buffer, ref int capacity, int length)
        {
            if (length > capacity)
            {
                int size = Math.Max(length, Math.Max(8, capacity * 2));
                var grown = (IntPtr*)NativeMemory.Alloc((nuint)size, (nuint)IntPtr.Size);
                if (buffer != null) NativeMemory.Free(buffer);
                buffer = grown;
                capacity = size;
            }
            return buffer;
        }

        // ---- the backward callback's returned gradients: copied by libtorch right after the callback returns ----

        [ThreadStatic] private static IntPtr* t_returned;
        [ThreadStatic] private static int t_returnedCapacity;

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        private delegate AutogradNative.TensorArray ApplyCallback(IntPtr* tensors, int size);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        private delegate void DeleteCallback();

        /// <summary>A native node's callbacks: function pointers marshalled once, reused by node after node.</summary>
        private sealed class Slot
        {
            private static readonly Stack<Slot> s_free = new();
            private static readonly List<Slot> s_all = new();   // keeps every slot's delegates alive for the process

            private readonly ApplyCallback _apply;
            private readonly DeleteCallback _delete;
            public readonly IntPtr ApplyPtr;
            public readonly IntPtr DeletePtr;
            private GradientSite? _site;
            private int _inputs;
            public AutogradNative.NodePtr Node;

            private Slot()
            {
                _apply = OnApply;
                _delete = OnDelete;
                ApplyPtr = Marshal.GetFunctionPointerForDelegate(_apply);
                DeletePtr = Marshal.GetFunctionPointerForDelegate(_delete);
            }

            /// <summary>How many slots exist (the peak number of live nodes so far).</summary>
            public static int Count { get { lock (s_free) return s_all.Count; } }

            public static Slot Rent(GradientSite site, int inputs)
            {
                Slot? slot;
                lock (s_free)
                {
                    if (!s_free.TryPop(out slot))
                    {
                        slot = new Slot();
                        s_all.Add(slot);
                    }
                }
                slot._site = site;
                slot._inputs = inputs;
                return slot;
            }

            public void Release()
            {
                _site = null;
                Node = default;
                lock (s_free) s_free.Push(this);
            }

            /// <summary>libtorch destroys the node: drop its weak pointer, and the slot is free again.</summary>
            private void OnDelete()
            {
                try
                {
                    var node = Node;
                    if (node.Weak != IntPtr.Zero)
                    {
                        AutogradNative.DisposeWeak(node);
                        try { AutogradNative.Check(); } catch (Exception) { /* nothing to do in a destructor */ }
                    }
                    Release();
                }
                catch (Exception)
                {
                    // Never let an exception reach libtorch (process abort).
                }
            }

            /// <summary>The node's backward: gradients w.r.t. its outputs in, gradients w.r.t. its inputs out.</summary>
            private AutogradNative.TensorArray OnApply(IntPtr* tensors, int size)
            {
                var site = _site;
                int n = _inputs;
                Tensor?[]? back = null;
                PendingGradients.Enter();
                try
                {
                    var grads = new Tensor?[size];
                    for (int i = 0; i < size; i++)
                        if (tensors[i] != IntPtr.Zero) grads[i] = PendingGradients.Adopt(tensors[i]);
                    back = site!.OnBackward(grads);
                    if (back.Length != n)
                        throw new InvalidOperationException($"The gradient site returned {back.Length} gradients for a node with {n} inputs.");
                }
                catch (Exception e)
                {
                    back = null;
                    string where = "?";
                    try { where = site?.Where ?? "?"; } catch (Exception) { }
                    try { BackwardHookFailures.Stash(e, where, site?.Owner); } catch (Exception) { }
                }
                finally { PendingGradients.Exit(); }
                // The buffer is taken only now: a hook that ran a backward of its own used it meanwhile.
                var ret = Buffer(ref t_returned, ref t_returnedCapacity, n);
                for (int i = 0; i < n; i++)
                {
                    if (back is not null) ret[i] = back[i] is { IsInvalid: false } t ? t.Handle : IntPtr.Zero;
                    else ret[i] = size == n ? tensors[i] : IntPtr.Zero;   // a failure: an identity node passes the gradients on unchanged
                }
                return new AutogradNative.TensorArray { Array = (IntPtr)ret, Size = n };
            }
        }

        /// <summary>Nodes alive now or earlier (each has a slot): for tests and probes.</summary>
        internal static int Slots => Slot.Count;
    }

    /// <summary>
    /// One place in the graph where gradients pass through an <see cref="AutogradNode"/>: a module call's input or output
    /// side, or a tensor's gradient hook. Receives one gradient per node output (null = undefined, PyTorch's None) and
    /// returns one per node input. Implementations may throw: the node stashes the exception (never lets it reach libtorch).
    /// The gradients it receives are disposed after the next callback (<see cref="PendingGradients"/>); a tensor it creates
    /// and returns must be handed to <see cref="PendingGradients.Add"/> (libtorch copies it after the callback returns).
    /// </summary>
    internal abstract class GradientSite
    {
        public abstract Tensor?[] OnBackward(Tensor?[] grads);

        /// <summary>Names the hook's place for an exception it threw (<c>Data["TorchHooks.BackwardHook"]</c>).</summary>
        public abstract string Where { get; }

        /// <summary>The module whose hook this is (its model gets the failure too), or null.</summary>
        public virtual HookPoint? Owner => null;
    }

    /// <summary>
    /// Gradient handles from backward callbacks that libtorch copies only after the callback returns. A callback
    /// disposes the ones left by earlier callbacks of its thread (copied by then); the last ones are disposed by
    /// <see cref="BackwardHooks.Backward"/>, by the next hooked forward on the thread, or by the next callback.
    /// So a training loop's live-tensor count stays flat.
    /// </summary>
    internal static class PendingGradients
    {
        [ThreadStatic] private static List<Tensor>? t_tensors;
        [ThreadStatic] private static int t_depth;

        /// <summary>A callback begins: dispose what earlier callbacks left (unless one is still running: a hook that runs a backward).</summary>
        public static void Enter()
        {
            if (t_depth++ == 0) DisposeAll();
        }

        public static void Exit() => t_depth--;

        public static void Add(Tensor? t)
        {
            if (t is not null) (t_tensors ??= new List<Tensor>()).Add(t);
        }

        /// <summary>A managed tensor for a handle libtorch handed over (its own copy), disposed with the others.</summary>
        public static Tensor Adopt(IntPtr handle)
        {
            var t = torch.Tensor.UnsafeCreateTensor(handle);
            Add(t);
            return t;
        }

        /// <summary>
        /// Takes <paramref name="tensors"/> out of this thread's pending handles: a site keeps them past the callback
        /// (an output node's grad_output, for its input node) and hands them back with <see cref="Add"/> when done.
        /// </summary>
        public static void Keep(Tensor?[] tensors)
        {
            var list = t_tensors;
            if (list is null) return;
            foreach (var t in tensors)
            {
                if (t is null) continue;
                for (int i = list.Count - 1; i >= 0; i--)
                    if (ReferenceEquals(list[i], t)) list.RemoveAt(i);
            }
        }

        /// <summary>Disposes every handle kept on this thread, unless a callback is running on it (a handle listed twice is disposed once).</summary>
        public static void DisposeAll()
        {
            var list = t_tensors;
            if (list is null || list.Count == 0 || t_depth > 1) return;
            for (int i = 0; i < list.Count; i++)
                if (!list[i].IsInvalid) list[i].Dispose();
            list.Clear();
        }
    }
}
