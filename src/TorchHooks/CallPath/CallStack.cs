using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
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
        public torch.nn.Module Module = null!;
        public int CallIndex;
        /// <summary>The concerns taking part in this call (bit <see cref="CallConcern.Slot"/> of each), fixed when it begins.</summary>
        public int Concerns;
        private readonly CallState?[] _states = new CallState?[CallPath.Concerns.Length];

        /// <summary>
        /// The slot of per-call state of the concern whose <see cref="CallConcern.Slot"/> is <paramref name="slot"/>:
        /// null until the concern first takes part in a call on this frame, then its state object, reused by later
        /// calls and cleared when the frame is popped. Typical use (non-generic, so it inlines):
        /// <c>var state = Unsafe.As&lt;State&gt;(frame.State(Instance.Slot) ??= new State());</c>
        /// </summary>
        public ref CallState? State(int slot) => ref _states[slot];

        public void Clear()
        {
            Node = null!; Module = null!; CallIndex = 0; Concerns = 0;
            foreach (var state in _states) state?.Clear();
        }
    }

    /// <summary>The per-thread stack of module calls that have active hooks.</summary>
    internal sealed class CallStack
    {
        [ThreadStatic] private static CallStack? t_current;
        private CallFrame[] _frames = new CallFrame[16];
        private int _count;

        /// <summary>Identifies the current outermost facade call on this thread (for call indices).</summary>
        public long Pass;
        /// <summary>How many facade calls are under way on this thread.</summary>
        public int FacadeDepth;

        public static CallStack Current => t_current ??= new CallStack();
        public static CallStack? CurrentOrNull => t_current;

        /// <summary>Whether any hooked call is under way on this thread (the post-hook fast path).</summary>
        public static bool HasFrames => t_current is { _count: > 0 };

        public int Count => _count;
        public CallFrame this[int i] => _frames[i];
        public CallFrame? Top => _count == 0 ? null : _frames[_count - 1];

        public CallFrame Push()
        {
            if (_count == _frames.Length) Array.Resize(ref _frames, _count * 2);
            return _frames[_count++] ??= new CallFrame();
        }

        /// <summary>Index of the topmost frame of <paramref name="module"/>'s call, or -1.</summary>
        public int Find(HookPoint node, torch.nn.Module module)
        {
            for (int i = _count - 1; i >= 0; i--)
            {
                var f = _frames[i];
                if (ReferenceEquals(f.Node, node) && ReferenceEquals(f.Module, module)) return i;
            }
            return -1;
        }

        public void Pop()
        {
            _frames[--_count].Clear();
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
    }
}
