"""Training: running `caffe train` (snapshots, resume, log, progress), reading Caffe's log and
plotting its curves.

    runner     train(solver, ...): the real caffe tool with resume/log/progress/plot
    caffe_log  parse a Caffe training log (live, line by line, or a file)
    plots      loss and accuracy curves of one or several logs (PNG)
"""
