using System;
using TorchHooks;
using TorchSharp;
using static TorchSharp.torch;

var seq = nn.Sequential(("fc1", nn.Linear(3, 4)), ("act", nn.ReLU()), ("fc2", nn.Linear(4, 1)));
var m = seq.WithHooks();
Console.WriteLine(string.Join(",", m.paths));
using var h = m.register_forward_pre_hook((mod, x) => { Console.WriteLine($"pre root {ModuleCallInfo.Current}"); return null; });
using var g = m["fc1"].register_forward_hook((mod, x, y) => { Console.WriteLine($"fwd fc1 {ModuleCallInfo.Current}"); return y * 0; }, always_call: true);
var y = m.call(ones(2, 3));
Console.WriteLine(y.str());
Console.WriteLine(string.Join(",", m.state_dict().Keys));
try { var b = m["fc3"]; } catch (Exception e) { Console.WriteLine(e.Message); }
