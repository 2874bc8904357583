using System;
using System.Threading;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The bookkeeping of one module call that is under way on this thread: which module, its call index,
    /// and one slot of per-call state for each concern on the call path (<see cref="State"/>).
    /// Frames and their states are reused objects, so an active call allocates nothing here.
    /// </summary>
    internal sealed class CallFrame
    {
        public HookPoint Node = null!;
        /// <summary>The module called (a node belongs to one module, so this is <c>Node.Module</c>).</summary>
        public torch.nn.Module Module => Node.Module;
        public int CallIndex;
        /// <summary>Whether the call runs again in backward to rebuild activations (<see cref="CallStack.Recomputing"/>).</summary>
        public bool IsRecomputation;
        /// <summary>Where the machine stack was when the call began (<see cref="CallStack.Mark"/>): calls nested in it are deeper.</summary>
        public nuint StackMark;
        /// <summary>The concerns taking part in this call (bit <see cref="CallConcern.Slot"/> of each), fixed when it begins.</summary>
        public int Concerns;
        /// <summary><see cref="CallStack.Throws"/> when the call began: the call can have been abandoned only if it changed since.</summary>
        public int ThrowsAtPush;
        private readonly CallState?[] _states = new CallState?[CallPath.Concerns.Length];

        /// <summary>
        /// The slot of per-call state of the concern whose <see cref="CallConcern.Slot"/> is <paramref name="slot"/>:
        /// null until the concern first takes part in a call on this frame, then its state object, reused by later
        /// calls and cleared when the frame is popped. Typical use (non-generic, so it inlines):
        /// <c>var state = Unsafe.As&lt;State&gt;(frame.State(Instance.Slot) ??= new State());</c>
        /// </summary>
        public ref CallState? State(int slot)
        {
            // Not `ref _states[slot]`: a ref into an array of a class type costs a covariance check per access.
            Debug.Assert((uint)slot < (uint)_states.Length);
            return ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_states), slot);
        }

        public void Clear()
        {
            // Only the concerns that took part in this call have state to forget.
            for (int bits = Concerns, slot = 0; bits != 0; bits >>= 1, slot++)
                if ((bits & 1) != 0) _states[slot]?.Clear();
            Node = null!; CallIndex = 0; Concerns = 0; StackMark = 0; ThrowsAtPush = 0; IsRecomputation = false;
        }
    }

    /// <summary>
    /// The per-thread stack of module calls that have active hooks.
    /// </summary>
    /// <remarks>
    /// TorchSharp's sealed <c>call</c> has no <c>finally</c> to attach to, so a call whose forward threw leaves its
    /// frame here until something notices. A frame is abandoned once the machine stack has unwound past the point
    /// where its call began: every call nested in it runs deeper (at a lower address; .NET stacks grow down on
    /// every supported platform), and a call at the same depth or shallower can only begin after it ended.
    /// <see cref="FinishAbandoned"/> uses that at the start and end of every module call of a wrapped tree while
    /// frames are open, so a failed call is finished (always_call hooks, precision region) before the next module
    /// runs — whether the exception was caught inside a parent's forward or outside a direct call.
    /// <para>Stack addresses alone are not proof: the mark of a call is taken inside TorchSharp's pre-hook chain, which
    /// for some signatures (and some JIT tiers) is deeper than the whole path down to a call nested in its forward
    /// (seen: a two-input module's mark 48 bytes below a nested <c>Linear</c>'s post-hook, after tier-1 compilation),
    /// and such a live call was finished as failed: its checkpoint, precision and always_call steps ran in the middle
    /// of its forward. So a call counts as abandoned only if (1) an exception was thrown on the thread since it began
    /// (<see cref="Throws"/>, counted by a first-chance exception handler — without one, no call can have been
    /// skipped), (2) the current position is not deeper than its mark, and (3) either it is more than
    /// <see cref="ChainMargin"/> shallower, or the module now calling is not a submodule of the call's module (a
    /// nested call of a submodule within the margin is taken as nested).</para>
    /// </remarks>
    internal sealed class CallStack
    {
        [ThreadStatic] private static CallStack? t_current;
        private CallFrame[] _frames = new CallFrame[16];
        private int _count;
        // Call counts of the current pass, by HookPoint.Id: a count is valid while its stamp equals Pass (no clearing).
        private int[] _callCounts = Array.Empty<int>();
        private long[] _callCountStamps = Array.Empty<long>();

        /// <summary>Identifies the current outermost call on this thread (for call indices).</summary>
        public long Pass;
        /// <summary>The facade whose <c>call</c> is about to run its <c>forward</c> on this thread (<see cref="FacadeEntry"/>).</summary>
        public torch.nn.Module? EnteredFacade;
        /// <summary>How many recomputations (a checkpointed call run again in backward) are under way on this thread: calls begun meanwhile are <see cref="CallFrame.IsRecomputation"/>.</summary>
        public int Recomputing;
        /// <summary>How many facade calls are under way on this thread.</summary>
        public int FacadeDepth;
        /// <summary>The latest value a hook put in place of an input or output during the current facade call (for error messages).</summary>
        public Replacement LastReplacement;

        /// <summary>
        /// How many exceptions were thrown on this thread while hooked calls were under way (first chance: caught or
        /// not). A frame records it when its call begins (<see cref="CallFrame.ThrowsAtPush"/>).
        /// </summary>
        public int Throws;

        /// <summary>
        /// The most by which a call's mark (taken in its pre-hook chain) can lie below the path to a call nested in its
        /// forward: larger than any hook chain (a few hundred bytes), far smaller than any stack.
        /// </summary>
        internal const int ChainMargin = 4096;

        private static int s_watching;

        public CallStack()
        {
            if (Interlocked.Exchange(ref s_watching, 1) == 0)
                AppDomain.CurrentDomain.FirstChanceException += static (_, _) =>
                {
                    if (t_current is { _count: > 0 } stack) stack.Throws++;
                };
        }

        public static CallStack Current => t_current ??= new CallStack();
        public static CallStack? CurrentOrNull => t_current;

        /// <summary>Whether any hooked call is under way on this thread (the pre-hook fast path).</summary>
        public static bool HasFrames => s_threadsWithFrames != 0 && t_current is { _count: > 0 };

        // How many threads have hooked calls under way: while none has, the dispatchers skip the thread-static read.
        // Changed only when a thread's stack goes from empty to one frame and back (once per outermost hooked call).
        private static int s_threadsWithFrames;

        /// <summary>This thread's stack when a hooked call is under way on it, else null (the post-hook fast path).</summary>
        public static CallStack? Frames => s_threadsWithFrames != 0 && t_current is { _count: > 0 } stack ? stack : null;

        public int Count => _count;
        public CallFrame this[int i] => _frames[i];
        public CallFrame? Top => _count == 0 ? null : _frames[_count - 1];

        /// <summary>The current position of the machine stack, as seen from the caller's frame.</summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static unsafe nuint Mark()
        {
            byte probe = 0;
            return (nuint)(&probe);
        }

        public CallFrame Push()
        {
            if (_count == _frames.Length) Array.Resize(ref _frames, _count * 2);
            if (_count == 0) Interlocked.Increment(ref s_threadsWithFrames);
            var frame = _frames[_count++] ??= new CallFrame();
            frame.ThrowsAtPush = Throws;
            return frame;
        }

        /// <summary>
        /// <paramref name="node"/>'s call index in the current pass on this thread: 0 for its first call, 1 for the
        /// second... Per thread, so calls of one model on several threads never share a count.
        /// </summary>
        public int NextCallIndex(HookPoint node)
        {
            int id = node.Id;
            if ((uint)id >= (uint)_callCounts.Length && !GrowCallCounts(id)) return NextCallIndexByNode(node);
            ref long stamp = ref _callCountStamps[id];
            if (stamp != Pass) { stamp = Pass; _callCounts[id] = 0; }
            return _callCounts[id]++;
        }

        /// <summary>Node ids are never reused, so the tables stop growing at this size (192 KB per thread); later nodes are counted by reference.</summary>
        private const int MaxTableSize = 1 << 14;
        private Dictionary<HookPoint, (long Pass, int Count)>? _overflowCounts;

        [MethodImpl(MethodImplOptions.NoInlining)]
        private bool GrowCallCounts(int id)
        {
            if (id >= MaxTableSize) return false;
            int size = Math.Max(64, _callCounts.Length);
            while (size <= id) size *= 2;
            int old = _callCountStamps.Length;
            Array.Resize(ref _callCounts, size);
            Array.Resize(ref _callCountStamps, size);
            Array.Fill(_callCountStamps, long.MinValue, old, size - old);
            return true;
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private int NextCallIndexByNode(HookPoint node)
        {
            var counts = _overflowCounts ??= new Dictionary<HookPoint, (long Pass, int Count)>(ReferenceEqualityComparer.Instance);
            ref var entry = ref CollectionsMarshal.GetValueRefOrAddDefault(counts, node, out bool exists);
            if (!exists || entry.Pass != Pass) entry = (Pass, 0);
            return entry.Count++;
        }

        /// <summary>The outermost call ended: the next one starts a new pass (call counts of this one lapse); drop the replacement record.</summary>
        public void EndPass()
        {
            Pass++;
            LastReplacement = default;
            if (_overflowCounts is { Count: > 0 } overflow) overflow.Clear();
        }

        /// <summary>Index of the topmost frame of a call of <paramref name="node"/>'s module, or -1.</summary>
        public int Find(HookPoint node)
        {
            for (int i = _count - 1; i >= 0; i--)
                if (ReferenceEquals(_frames[i].Node, node)) return i;
            return -1;
        }

        public void Pop()
        {
            _frames[--_count].Clear();
            if (_count == 0) Interlocked.Decrement(ref s_threadsWithFrames);
        }

        /// <summary>
        /// Finishes, as failed, the calls that are over although their frames are still here: they threw and the
        /// exception was caught (see the class remarks for how that is told). <paramref name="here"/> is a
        /// <see cref="Mark"/> taken where a call of <paramref name="node"/> begins or ends. Returns whether any was finished.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool FinishAbandoned(nuint here, HookPoint node)
        {
            if (_count == 0) return false;
            var top = _frames[_count - 1];
            // else: the top call is still under way (nothing thrown since it began, or we are deeper than its mark)
            return top.ThrowsAtPush != Throws && top.StackMark <= here && FinishAbandonedSlow(here, node);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private bool FinishAbandonedSlow(nuint here, HookPoint node)
        {
            int keep = _count;
            while (keep > 0 && IsAbandoned(_frames[keep - 1], here, node)) keep--;
            if (keep == _count) return false;
            var suppressed = new List<Exception>();
            Unwind(keep, suppressed);
            FailureReport.Warn(suppressed, null);
            return true;
        }

        /// <summary>Whether <paramref name="frame"/>'s call is over, seen from a call of <paramref name="node"/> at <paramref name="here"/>.</summary>
        private bool IsAbandoned(CallFrame frame, nuint here, HookPoint node)
        {
            if (frame.ThrowsAtPush == Throws || frame.StackMark > here) return false;
            if (here - frame.StackMark > ChainMargin) return true;
            return !IsSubmodule(node.Module, frame.Node.Module);
        }

        /// <summary>Whether <paramref name="module"/> is a submodule (at any depth, not itself) of <paramref name="parent"/>.</summary>
        private static bool IsSubmodule(torch.nn.Module module, torch.nn.Module parent)
        {
            if (ReferenceEquals(module, parent)) return false;
            try
            {
                foreach (var m in parent.modules())
                    if (ReferenceEquals(m, module)) return true;
            }
            catch (ObjectDisposedException) { }
            return false;
        }

        /// <summary>
        /// Finishes every call above <paramref name="keep"/> frames as failed, innermost first: runs the
        /// failure step of every concern (always_call forward hooks that have not run yet, precision regions). Exceptions thrown by
        /// those hooks are collected in <paramref name="suppressed"/>, never thrown.
        /// </summary>
        public void Unwind(int keep, List<Exception> suppressed)
        {
            while (_count > keep)
            {
                var frame = _frames[_count - 1];
                try { frame.Node.FinishFailedCall(frame, suppressed); }
                finally { Pop(); }
            }
        }

        /// <summary>
        /// An autocast scope is exiting while regions opened after it by module calls (precision policies) are still
        /// open: those calls threw inside the scope, and the exception is unwinding through its <c>using</c>. Finishes
        /// them (innermost first) until no region above <paramref name="autocastIndex"/> is left, so the scope exits
        /// in order and the call's own exception propagates.
        /// </summary>
        public static void FinishCallsWithRegionsAbove(int autocastIndex)
        {
            var stack = t_current;
            if (stack is null) return;
            var suppressed = new List<Exception>();
            while (stack._count > 0 && AutocastStack.Depth > autocastIndex + 1)
                stack.Unwind(stack._count - 1, suppressed);
            FailureReport.Warn(suppressed, null);
        }
    }

    /// <summary>A value a hook returned in place of a module's input or output (for the message when the next layer rejects it).</summary>
    internal readonly struct Replacement
    {
        public Replacement(HookPoint node, string hook, string what, object? value) { Node = node; Hook = hook; What = what; Value = value; }
        public readonly HookPoint? Node;
        /// <summary>"forward hook #0", "global forward pre-hook #1".</summary>
        public readonly string? Hook;
        /// <summary>"output" or "input".</summary>
        public readonly string? What;
        public readonly object? Value;
    }
}
