using System;
using System.Collections.Generic;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The bookkeeping of one module call that is under way on this thread: what the call path needs
    /// between "before forward" and "after forward", and to finish the call if forward throws.
    /// Frames are reused objects, so an active call allocates nothing here.
    /// </summary>
    internal sealed class CallFrame
    {
        public HookPoint Node = null!;
        public torch.nn.Module Module = null!;
        public int CallIndex;
        /// <summary>Forward hooks as they were when the call began (global, then local).</summary>
        public HookEntry[] GlobalForward = Array.Empty<HookEntry>();
        public HookEntry[] LocalForward = Array.Empty<HookEntry>();
        /// <summary>How many forward hooks (global then local) have started; a hook that threw counts as run.</summary>
        public int ForwardHooksStarted;
        /// <summary>The input after pre-hooks, kept for always_call hooks if the call fails.</summary>
        public object? Args;
        /// <summary>The autocast region of the module's precision policy, open while forward runs.</summary>
        public AutocastToken Precision;
        /// <summary>Inputs the precision policy cast for forward; disposed when the call ends.</summary>
        public List<torch.Tensor>? CastInputs;

        /// <summary>Step 4 of the call path: closes the precision region and disposes cast inputs (except a returned one).</summary>
        public void CloseForwardScope(object? result)
        {
            var precision = Precision;
            Precision = default;
            var cast = CastInputs;
            CastInputs = null;
            try { precision.Dispose(); }
            finally
            {
                if (cast is not null)
                    foreach (var t in cast)
                        if (!ReferenceEquals(t, result)) t.Dispose();
            }
        }

        public void Clear()
        {
            Node = null!; Module = null!; Args = null; Precision = default; CastInputs = null;
            GlobalForward = LocalForward = Array.Empty<HookEntry>();
            ForwardHooksStarted = 0; CallIndex = 0;
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
        /// always_call forward hooks that have not run yet and closes forward scopes. Exceptions thrown by
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
