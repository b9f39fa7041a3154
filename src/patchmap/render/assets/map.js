/* patchmap interactive map: unit polygons from a shared-border topology, territory
   borders, labels, table, search and an edit mode. Loads nothing from the network.
   Every string that comes from the user's data goes through esc() or textContent. */
(function () {
  'use strict';

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }

  /* integers written by patchmap.render.topology.encode_ints (polyline-style text) */
  function decodeInts(str) {
    var out = new Float64Array(str.length), k = 0, i = 0, n = str.length;
    while (i < n) {
      var v = 0, shift = 0, b;
      do { b = str.charCodeAt(i++) - 63; v += (b & 31) * Math.pow(2, shift); shift += 5; } while (b >= 32);
      out[k++] = v % 2 ? -(v + 1) / 2 : v / 2;
    }
    return out.subarray(0, k);
  }

  function num(x) {
    var a = Math.abs(x);
    if (!isFinite(x)) return 'n/a';
    if (a >= 1e9) return (x / 1e9).toPrecision(3) + 'B';
    if (a >= 1e6) return (x / 1e6).toPrecision(3) + 'M';
    if (a >= 1e4) return (x / 1e3).toPrecision(3) + 'k';
    if (a >= 100 || x === Math.round(x)) return Math.round(x).toLocaleString('en-US');
    return x.toPrecision(3);
  }
  function amount(x, money) { return (money ? '$' : '') + num(x); }
  function pct(x) { return isFinite(x) ? (x >= 0 ? '+' : '\u2212') + Math.abs(100 * x).toFixed(1) + '%' : ''; }
  function el(tag, cls, parent, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function control(pos, build) {
    var c = L.control({position: pos});
    c.onAdd = function () {
      var d = L.DomUtil.create('div', 'leaflet-control');
      L.DomEvent.disableClickPropagation(d);
      L.DomEvent.disableScrollPropagation(d);
      build(d);
      return d;
    };
    return c;
  }

  /* arcs -> rings -> polygons, as arrays of Leaflet LatLngs (one object per vertex, shared
     by the arcs' two sides: far less for the garbage collector on a national map) */
  function geometry(topo) {
    var ints = decodeInts(topo.arcs), x0 = topo.origin[0], y0 = topo.origin[1], s = topo.step;
    var arcs = [], k = 0;
    for (var a = 0; a < topo.arcLen.length; a++) {
      var x = 0, y = 0, pts = [];
      for (var j = 0; j < topo.arcLen[a]; j++, k += 2) {
        if (j === 0) { x = ints[k]; y = ints[k + 1]; } else { x += ints[k]; y += ints[k + 1]; }
        pts.push(new L.LatLng(y0 + s * y, x0 + s * x));  /* shared by both sides: Leaflet keeps LatLngs as given */
      }
      arcs.push(pts);
    }
    var feats = [], pi = 0, ri = 0, ai = 0;
    for (var f = 0; f < topo.parts.length; f++) {
      var polys = [];
      for (var p = 0; p < topo.parts[f]; p++, pi++) {
        var rings = [];
        for (var r = 0; r < topo.rings[pi]; r++, ri++) {
          var ring = [];
          for (var q = 0; q < topo.ringArcs[ri]; q++, ai++) {
            var ref = topo.refs[ai], arc = arcs[ref >= 0 ? ref : ~ref], m = arc.length - 1;
            if (ref >= 0) { for (var i = 0; i < m; i++) ring.push(arc[i]); }
            else { for (var i2 = m; i2 > 0; i2--) ring.push(arc[i2]); }
          }
          rings.push(ring);
        }
        polys.push(rings);
      }
      feats.push(polys);
    }
    return {arcs: arcs, feats: feats};
  }

  window.patchmap = function (map, PM) {
    var U = PM.units, T = PM.terr, n = U.id.length, K = T.label.length;
    var geo = geometry(PM.topo), owners = PM.topo.owners;
    var terr = U.t.slice(), orig = U.t.slice();
    var measures = PM.measures, primary = measures[0];
    var hasRep = T.rep.some(function (r) { return r; });
    var unitName = PM.unitName, mode = 'territory', highlighted = -1, editing = false;
    var selected = {}, undoStack = [], byId = {};
    for (var f0 = 0; f0 < n; f0++) byId[String(U.id[f0]).toLowerCase()] = f0;
    var narrow = map.getContainer().clientWidth < 640;

    /* adjacency: units sharing an arc, plus the links the engine uses (islands, gaps) */
    var adj = [];
    for (var u0 = 0; u0 < n; u0++) adj.push([]);
    function link(a, b) { if (a >= 0 && b >= 0 && a !== b && adj[a].indexOf(b) < 0) { adj[a].push(b); adj[b].push(a); } }
    for (var e = 0; e < owners.length; e += 2) link(owners[e], owners[e + 1]);
    for (var e2 = 0; e2 < PM.extraEdges.length; e2 += 2) link(PM.extraEdges[e2], PM.extraEdges[e2 + 1]);

    /* totals per territory, kept up to date as units move */
    var totals = {};
    measures.forEach(function (m) {
      var t = new Float64Array(K), v = U.v[m.key];
      for (var f = 0; f < n; f++) t[terr[f]] += v[f];
      totals[m.key] = t;
    });
    var counts = new Int32Array(K);
    for (var f1 = 0; f1 < n; f1++) counts[terr[f1]]++;
    function target(key) { var s = 0, t = totals[key]; for (var i = 0; i < K; i++) s += t[i]; return s / K; }
    function dev(key, t) { var m = target(key); return m ? totals[key][t] / m - 1 : 0; }
    function pieces(t) {
      var seen = {}, count = 0;
      for (var f = 0; f < n; f++) {
        if (terr[f] !== t || seen[f]) continue;
        count++;
        var stack = [f]; seen[f] = 1;
        while (stack.length) {
          var g = stack.pop(), nb = adj[g];
          for (var i = 0; i < nb.length; i++) if (terr[nb[i]] === t && !seen[nb[i]]) { seen[nb[i]] = 1; stack.push(nb[i]); }
        }
      }
      return count;
    }
    /* quotas: the company total split by the basis measure within floor and cap, as
       patchmap.quota.allocate_quota does, so they follow the units moved in edit mode */
    var quota = T.quota ? T.quota.slice() : null;
    function allocateQuota() {
      var Q = PM.quota;
      if (!Q || !totals[Q.basis]) return;
      var w = totals[Q.basis], q = new Float64Array(K), fixed = new Uint8Array(K);
      var lo = Q.floor || 0, hi = Q.cap === null ? Infinity : Q.cap, eps = 1e-9 * Math.max(Q.total, 1);
      for (var it = 0; it < 2 * K + 1; it++) {
        var rest = Q.total, ws = 0, nf = 0, t;
        for (t = 0; t < K; t++) { if (fixed[t]) rest -= q[t]; else { ws += Math.max(w[t], 0); nf++; } }
        for (t = 0; t < K; t++) if (!fixed[t]) q[t] = rest * (ws > 0 ? Math.max(w[t], 0) / ws : 1 / nf);
        var under = 0, over = 0;
        for (t = 0; t < K; t++) if (!fixed[t]) { if (q[t] < lo - eps) under += lo - q[t]; if (q[t] > hi + eps) over += q[t] - hi; }
        if (!under && !over) break;
        var all = true;
        for (t = 0; t < K; t++) {
          if (!fixed[t] && under >= over && q[t] < lo - eps) { q[t] = lo; fixed[t] = 1; }
          if (!fixed[t] && under < over && q[t] > hi + eps) { q[t] = hi; fixed[t] = 1; }
          if (!fixed[t]) all = false;
        }
        if (all) break;
      }
      for (var u = 0; u < K; u++) quota[u] = q[u];
    }
    var piecesOf = [];
    for (var t0 = 0; t0 < K; t0++) piecesOf.push(pieces(t0));

    /* panes: fills, borders, links, highlight, reps, labels */
    [['pm-units', 410, 1], ['pm-borders', 420, 0], ['pm-links', 430, 1], ['pm-sel', 440, 0],
     ['pm-reps', 460, 1], ['pm-labels', 470, 0]].forEach(function (p) {
      var pane = map.createPane(p[0]);
      pane.style.zIndex = p[1];
      if (!p[2]) pane.style.pointerEvents = 'none';
    });
    map.getPane('pm-units').style.opacity = PM.tiles ? 0.6 : 0.78;

    /* unit polygons, coloured by territory or by a density layer */
    var density = {};
    PM.densities.forEach(function (d) { density[d.name] = d; });
    function fillOf(f) {
      if (mode === 'territory') return T.color[terr[f]];
      var d = density[mode], c = U.d[d.key][f];
      return c < 0 ? null : d.colors[c];
    }
    function unitStyle(f) {
      var c = fillOf(f);
      return c ? {stroke: true, color: c, weight: 0.6, opacity: 1, fill: true, fillColor: c, fillOpacity: 1}
               : {stroke: false, fill: false};
    }
    var unitRenderer = L.canvas({pane: 'pm-units', padding: 0.3});
    var units = L.featureGroup(), polys = [];
    for (var f2 = 0; f2 < n; f2++) {
      var poly = L.polygon(geo.feats[f2], L.extend({renderer: unitRenderer}, unitStyle(f2)));
      poly._pm = f2;
      polys.push(poly);
      units.addLayer(poly);
    }
    /* added to the map once the view is fitted (below): projecting 30k polygons twice
       is the slowest part of opening a national map */

    /* borders: arcs whose two sides lie in different territories (or the map's edge) */
    var lineRenderer = L.canvas({pane: 'pm-borders', padding: 0.3});
    var borders = L.polyline([], {renderer: lineRenderer, color: '#222', weight: 1.5, opacity: 0.9, interactive: false});
    function drawBorders() {
      var out = [];
      for (var a = 0; a < geo.arcs.length; a++) {
        var o = owners[2 * a], p = owners[2 * a + 1];
        if (p < 0 || terr[o] !== terr[p]) out.push(geo.arcs[a]);
      }
      borders.setLatLngs(out);
    }
    drawBorders();
    var selRenderer = L.canvas({pane: 'pm-sel', padding: 0.3});
    var hiLine = L.polyline([], {renderer: selRenderer, color: '#000', weight: 4, opacity: 0.9, interactive: false}).addTo(map);
    var selLine = L.polyline([], {renderer: selRenderer, color: '#ff7b00', weight: 3, opacity: 1, interactive: false}).addTo(map);
    function outline(inside) {
      var out = [];
      for (var a = 0; a < geo.arcs.length; a++) {
        var o = owners[2 * a], p = owners[2 * a + 1];
        if (inside(o) !== (p >= 0 && inside(p))) out.push(geo.arcs[a]);
      }
      return out;
    }
    function highlight(t) {
      highlighted = t;
      hiLine.setLatLngs(t < 0 ? [] : outline(function (f) { return terr[f] === t; }));
      rows.forEach(function (r, i) { r.classList.toggle('pm-on', i === t); });
    }
    function drawSelection() { selLine.setLatLngs(outline(function (f) { return selected[f]; })); }

    /* labels at each territory's most inland point, sized to the zoom */
    var labels = L.layerGroup(), labelEls = [];
    for (var t1 = 0; t1 < K; t1++) {
      var text = '<b>' + esc(T.label[t1]) + '</b>' + (T.rep[t1] ? '<span>' + esc(T.rep[t1]) + '</span>' : '');
      var mk = L.marker(T.at[t1], {
        icon: L.divIcon({className: 'pm-label-box', html: '<div class="pm-label" data-t="' + t1 + '">' + text + '</div>', iconSize: [0, 0]}),
        interactive: false, keyboard: false, pane: 'pm-labels'
      });
      labels.addLayer(mk);
      labelEls.push(mk);
    }
    labels.addTo(map);
    function sizeLabels() {
      var z = map.getZoom(), placed = [];
      var order = T.r.map(function (r, i) { return i; }).sort(function (a, b) { return T.r[b] - T.r[a]; });
      /* write every size first, then read every box (one layout, not one per label) */
      var labs = order.map(function (t) {
        var node = labelEls[t].getElement();
        if (!node) return null;
        var lab = node.firstChild, lat = T.at[t][0];
        var mpp = 40075016.686 * Math.cos(lat * Math.PI / 180) / Math.pow(2, z + 8);
        var rpx = T.r[t] / mpp;
        lab.style.fontSize = Math.max(10, Math.min(18, rpx * 0.35)) + 'px';
        var rep = lab.querySelector('span');
        if (rep) rep.style.display = rpx > 40 ? '' : 'none';
        lab.style.visibility = 'visible';
        return lab;
      });
      var boxes = labs.map(function (lab) { return lab && lab.getBoundingClientRect(); });
      order.forEach(function (t, i) {
        var b = boxes[i];
        if (!b) return;
        var clash = placed.some(function (q) { return b.left < q.right && q.left < b.right && b.top < q.bottom && q.top < b.bottom; });
        if (clash && t !== highlighted) labs[i].style.visibility = 'hidden'; else placed.push(b);
      });
    }
    map.on('zoomend moveend', sizeLabels);

    /* links the plan relies on (islands, gaps): dashed, with the reason in their tooltip;
       only those inside one territory, as only they hold a territory together */
    var links = L.layerGroup(), linkLines = PM.links.map(function (l) {
      var line = L.polyline([[l[2], l[3]], [l[4], l[5]]], {pane: 'pm-links', color: '#333', weight: 2, dashArray: '5 5', opacity: 0.9});
      line.bindTooltip(function () {
        return '<b>Link across water or unmapped land</b><br>' + esc(unitName) + ' ' + esc(U.id[l[0]]) + ' and ' +
          esc(U.id[l[1]]) + ' (' + l[6].toFixed(1) + ' km apart) share no border; the plan joins them here so that ' +
          esc(T.label[terr[l[0]]]) + ' counts as one piece.';
      }, {sticky: true});
      return line;
    });
    function drawLinks() {
      PM.links.forEach(function (l, i) {
        var on = terr[l[0]] === terr[l[1]];
        if (on && !links.hasLayer(linkLines[i])) links.addLayer(linkLines[i]);
        if (!on && links.hasLayer(linkLines[i])) links.removeLayer(linkLines[i]);
      });
    }
    drawLinks();
    if (PM.links.length) links.addTo(map);

    /* rep home bases */
    var reps = L.layerGroup();
    PM.reps.forEach(function (r) {
      var m = L.circleMarker([r.lat, r.lng], {pane: 'pm-reps', radius: 6, color: '#fff', weight: 2, fillColor: '#111', fillOpacity: 1});
      m.bindTooltip('<b>' + esc(r.name) + '</b> (' + esc(r.id) + ')' + (r.t ? '<br>territory ' + esc(r.t) : '') +
        (r.capacity !== null && r.capacity !== undefined ? '<br>capacity ' + esc(r.capacity) : ''));
      reps.addLayer(m);
    });
    if (PM.reps.length) reps.addTo(map);

    /* words for tooltips and popups */
    function unitLine(f) {
      var parts = measures.filter(function (m) { return m.unit; }).map(function (m) { return amount(U.v[m.key][f], m.money) + ' ' + esc(m.label.toLowerCase()); });
      var d = density[mode];
      if (d) { var v = U.d[d.key + 'v'][f]; parts.push(esc(d.name.toLowerCase()) + ' ' + (v === null ? 'n/a' : num(v)) + ' per km\u00b2'); }
      return parts.join(' \u00b7 ');
    }
    function terrName(t) { return '<b>' + esc(T.label[t]) + '</b>' + (T.rep[t] ? ' \u00b7 ' + esc(T.rep[t]) : ''); }
    function unitTip(f) {
      var was = PM.compare ? '<br>in plan ' + esc(PM.compare.names[0]) + ': <b>' + esc(PM.compare.labelsA[PM.compare.a[f]]) + '</b>' : '';
      return '<b>' + esc(unitName) + ' ' + esc(U.id[f]) + '</b> \u00b7 ' + terrName(terr[f]) + was + '<br>' + unitLine(f);
    }
    function row(k, v, cls) { return '<tr><td>' + k + '</td><td' + (cls ? ' class="' + cls + '"' : '') + '>' + v + '</td></tr>'; }
    function terrPopup(t, f) {
      var h = '<div class="pm-tip">' + terrName(t) + '<table>';
      var d0 = dev(primary.key, t);
      h += row(esc(primary.label), amount(totals[primary.key][t], primary.money));
      h += row('vs target (' + amount(target(primary.key), primary.money) + ')', pct(d0));
      measures.slice(1).forEach(function (m) { if (m.table) h += row(esc(m.label), amount(totals[m.key][t], m.money)); });
      if (T.quota) h += row('Quota', amount(quota[t], true));
      h += '</table><details><summary>Details</summary><table>';
      h += row(esc(unitName) + 's', counts[t].toLocaleString('en-US'));
      PM.balance.slice(1).forEach(function (key) {
        var m = measures.filter(function (x) { return x.key === key; })[0];
        h += row(esc(m.label) + ' vs target', pct(dev(key, t)));
      });
      h += row('In one piece', piecesOf[t] === 1 ? 'yes' : '<b class="pm-warn">no (' + piecesOf[t] + ' pieces)</b>');
      if (T.pp) h += row('Compactness (Polsby\u2013Popper, 1 = circle; as planned)', T.pp[t] === null ? '' : T.pp[t].toFixed(2));
      h += '</table></details>';
      if (f !== undefined) h += '<hr style="margin:4px 0">' + '<b>' + esc(unitName) + ' ' + esc(U.id[f]) + '</b>: ' + unitLine(f);
      return h + '</div>';
    }

    var tip = L.tooltip({sticky: true, direction: 'top', offset: [0, -8]}), popup = L.popup({maxWidth: 360});
    units.on('mousemove', function (ev) {
      tip.setLatLng(ev.latlng).setContent(unitTip(ev.layer._pm));
      if (!map.hasLayer(tip)) tip.addTo(map);
    });
    units.on('mouseout', function () { map.removeLayer(tip); });
    units.on('click', function (ev) {
      var f = ev.layer._pm;
      if (editing) { toggleSelect(f); return; }
      highlight(terr[f]);
      popup.setLatLng(ev.latlng).setContent(terrPopup(terr[f], f)).openOn(map);
    });

    /* header, summary, legend */
    var container = map.getContainer();
    if (PM.title) {
      var head = el('div', 'pm-header', null, PM.title);
      container.parentNode.insertBefore(head, container);
    }
    var summaryBox;
    control('bottomleft', function (d) { d.className += ' pm-panel pm-summary'; summaryBox = d; }).addTo(map);
    function renderSummary() {
      var h = '<b>' + K + ' territories</b> \u00b7 ' + n.toLocaleString('en-US') + ' ' + esc(unitName) + 's';
      PM.balance.forEach(function (key, i) {
        var m = measures.filter(function (x) { return x.key === key; })[0], worst = 0;
        for (var t = 0; t < K; t++) worst = Math.max(worst, Math.abs(dev(key, t)));
        h += '<div' + (i ? ' class="pm-long"' : '') + '>' + esc(m.label) + ': every territory within \u00b1' +
          (100 * worst).toFixed(1) + '% of target (' + amount(target(key), m.money) + ')</div>';
      });
      var broken = [];
      for (var t2 = 0; t2 < K; t2++) if (piecesOf[t2] > 1) broken.push(esc(T.label[t2]));
      h += broken.length ? '<div class="pm-warn">' + broken.length + ' in several pieces: ' + broken.slice(0, 6).join(', ') + (broken.length > 6 ? ', \u2026' : '') + '</div>'
                         : '<div>Every territory is one piece' + (PM.links.length ? ' (dashed lines: links across water)' : '') + '</div>';
      var cut = 0, edges = 0;
      for (var a = 0; a < n; a++) for (var b = 0; b < adj[a].length; b++) if (adj[a][b] > a) { edges++; if (terr[a] !== terr[adj[a][b]]) cut++; }
      h += '<details class="pm-long"><summary>Details</summary>';
      if (PM.stats.meanPP !== null) h += 'Mean compactness (Polsby\u2013Popper, 1 = circle; as planned): ' + PM.stats.meanPP.toFixed(2) + '<br>';
      h += 'Neighbouring ' + esc(unitName) + 's split between territories (cut-edge fraction): ' + (edges ? (cut / edges).toFixed(3) : '0') + '<br>';
      h += 'Links across water or unmapped land: ' + PM.links.length + '</details>';
      if (C) { summaryBox.innerHTML = h; summaryBox.appendChild(cmpBox); return; }
      if (undoStack.length) h += '<div class="pm-warn">Edited: ' + changedCount() + ' ' + esc(unitName) + 's moved (not saved until you download plan.csv)</div>';
      summaryBox.innerHTML = h;
    }
    var legendBox;
    control('bottomright', function (d) { d.className += ' pm-panel pm-legend'; d.style.display = 'none'; legendBox = d; }).addTo(map);
    function renderLegend() {
      var d = density[mode];
      if (!d) { legendBox.style.display = 'none'; return; }
      var h = '<h4>' + esc(d.name) + ' (per km\u00b2)</h4>';
      d.colors.forEach(function (c, i) { h += '<div><i style="background:' + c + '"></i>' + esc(d.labels[i]) + '</div>'; });
      if (d.about) h += '<p>' + esc(d.about) + '</p>';
      legendBox.innerHTML = h;
      legendBox.style.display = 'block';
    }

    /* two plans compared (patchmap compare): units coloured by plan B as above, plan A's
       borders dashed, the units whose territory changed shaded, the comparison table */
    var C = PM.compare, compareOverlays = {};
    if (C) {
      var aBorders = [];
      for (var a1 = 0; a1 < geo.arcs.length; a1++) {
        var o1 = owners[2 * a1], p1 = owners[2 * a1 + 1];
        if (p1 >= 0 && C.a[o1] !== C.a[p1]) aBorders.push(geo.arcs[a1]);
      }
      map.createPane('pm-changed').style.zIndex = 415;
      map.getPane('pm-changed').style.pointerEvents = 'none';
      var aLine = L.polyline(aBorders, {pane: 'pm-links', color: '#000', weight: 2.5, dashArray: '6 5', opacity: 0.9, interactive: false});
      var chRenderer = L.canvas({pane: 'pm-changed', padding: 0.3}), changedLayer = L.featureGroup();
      C.changed.forEach(function (f) {
        changedLayer.addLayer(L.polygon(geo.feats[f], {renderer: chRenderer, color: '#d62728', weight: 1.5, fillColor: '#d62728', fillOpacity: 0.35, interactive: false}));
      });
      aLine.addTo(map);
      changedLayer.addTo(map);
      compareOverlays['Plan ' + esc(C.names[0]) + ': borders (dashed)'] = aLine;
      compareOverlays['Changed units (' + C.changed.length + ')'] = changedLayer;
      var cmpBox = el('div', 'pm-compare');
      var h = '<div>Colours, labels and table: plan <b>' + esc(C.names[1]) + '</b>; dashed borders: plan <b>' +
        esc(C.names[0]) + '</b>; shaded: ' + C.changed.length + ' ' + esc(unitName) + 's changed territory</div>' +
        '<table><tr><th></th><th class="n">' + esc(C.names[0]) + '</th><th class="n">' + esc(C.names[1]) + '</th><th class="n">change</th></tr>';
      C.table.forEach(function (r) { h += '<tr><td>' + esc(r[0]) + '</td><td class="n">' + esc(r[1]) + '</td><td class="n">' + esc(r[2]) + '</td><td class="n">' + esc(r[3]) + '</td></tr>'; });
      cmpBox.innerHTML = h + '</table>';
    }

    /* layer control: colour modes (one at a time) and overlays */
    var bases = {'Territories': L.layerGroup()}, overlays = compareOverlays;
    PM.densities.forEach(function (d) { bases[esc(d.name)] = L.layerGroup(); bases[esc(d.name)]._pmMode = d.name; });
    bases['Territories']._pmMode = 'territory';
    bases['Territories'].addTo(map);
    overlays['Territory borders'] = borders;
    overlays['Labels'] = labels;
    if (PM.links.length) overlays['Links across water'] = links;
    if (PM.reps.length) overlays['Rep home bases'] = reps;
    if (PM.tileLayer) overlays['Basemap (online)'] = PM.tileLayer;
    L.control.layers(bases, overlays, {collapsed: narrow, position: 'topright'}).addTo(map);
    map.on('baselayerchange', function (ev) {
      mode = ev.layer._pmMode;
      for (var f = 0; f < n; f++) polys[f].setStyle(unitStyle(f));
      renderLegend();
    });

    /* the territory table: sortable, a click highlights the territory */
    var rows = [], tbody, sortKey = 0, sortDir = 1, tableBox, tableWrap;
    var cols = [{name: 'Territory', v: function (t) { return T.label[t]; }}];
    if (hasRep) cols.push({name: 'Rep', v: function (t) { return T.rep[t]; }});
    measures.filter(function (m) { return m.table && m !== primary; }).forEach(function (m) {
      cols.push({name: m.label, num: true, v: function (t) { return totals[m.key][t]; }, show: function (x) { return amount(x, m.money); }});
    });
    cols.push({name: primary.label, num: true, v: function (t) { return totals[primary.key][t]; }, show: function (x) { return amount(x, primary.money); }});
    cols.push({name: 'vs target', num: true, v: function (t) { return dev(primary.key, t); }, show: pct});
    if (T.quota) cols.push({name: 'Quota', num: true, v: function (t) { return quota[t]; }, show: function (x) { return amount(x, true); }});
    function buildTable(box, interactive) {
      var table = el('table', null, box), tr = el('tr', null, el('thead', null, table));
      cols.forEach(function (c, i) {
        var th = el('th', c.num ? 'n' : '', tr, c.name);
        if (interactive) th.addEventListener('click', function () { sortDir = sortKey === i ? -sortDir : 1; sortKey = i; renderTable(); });
      });
      return el('tbody', null, table);
    }
    function fillRows(body, interactive) {
      var order = [];
      for (var t = 0; t < K; t++) order.push(t);
      var c = cols[sortKey];
      order.sort(function (a, b) {
        var x = c.v(a), y = c.v(b);
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir || a - b;
      });
      body.textContent = '';
      var out = [];
      order.forEach(function (t) {
        var r = el('tr', 'pm-row', body);
        r.dataset.t = T.label[t];
        if (piecesOf[t] > 1) r.classList.add('pm-broken');
        cols.forEach(function (col, i) {
          var v = col.v(t), td = el('td', col.num ? 'n' : '', r);
          if (i === 0) { var sw = el('i', 'pm-swatch', td); sw.style.background = T.color[t]; td.appendChild(document.createTextNode(v)); }
          else td.textContent = col.show ? col.show(v) : v;
          if (col.num) { td.dataset.v = v; if (col.show === pct && Math.abs(v) > PM.tolerance) td.classList.add('pm-off'); }
        });
        if (interactive) {
          r.addEventListener('click', function () { focusTerritory(t, true); });
          r.addEventListener('mouseenter', function () { if (highlighted < 0 || editing) hiLine.setLatLngs(outline(function (f) { return terr[f] === t; })); });
          r.addEventListener('mouseleave', function () { highlight(highlighted); });
        }
        out[t] = r;
      });
      return out;
    }
    function renderTable() {
      tableBox.querySelectorAll('th').forEach(function (th, i) { th.dataset.sort = i === sortKey ? sortDir : ''; });
      rows = fillRows(tbody, true);
      rows.forEach(function (r, i) { r.classList.toggle('pm-on', i === highlighted); });
      if (printBody) fillRows(printBody, false);
    }
    control('topright', function (d) {
      d.className += ' pm-panel pm-table';
      tableBox = d;
      var btn = el('button', 'pm-toggle', d, 'Territories (' + K + ') ' + (narrow ? '\u25B8' : '\u25BE'));
      tableWrap = el('div', 'pm-table-wrap', d);
      tbody = buildTable(tableWrap, true);
      function setOpen(open) {
        tableWrap.style.display = open ? '' : 'none';
        btn.textContent = 'Territories (' + K + ') ' + (open ? '\u25BE' : '\u25B8');
        d.classList.toggle('pm-sheet', open && narrow);
        document.body.classList.toggle('pm-sheet-open', open && narrow);
      }
      btn.addEventListener('click', function () { setOpen(tableWrap.style.display === 'none'); });
      setOpen(!narrow);
      d._pmOpen = setOpen;
    }).addTo(map);
    var printBox = el('div', 'pm-print', document.body), printBody;
    el('h3', null, printBox, 'Territories');
    printBody = buildTable(printBox, false);

    function territoryBounds(t) {
      var b = L.latLngBounds([]);
      for (var f = 0; f < n; f++) if (terr[f] === t) b.extend(polys[f].getBounds());
      return b;
    }
    function focusTerritory(t, zoom) {
      highlight(t);
      sizeLabels();
      var b = territoryBounds(t);
      if (zoom && b.isValid()) map.fitBounds(b, {padding: [20, 20], maxZoom: Math.max(map.getZoom(), 9)});
      if (narrow && tableBox._pmOpen) tableBox._pmOpen(false);
    }

    /* search: a ZIP (unit id), a territory or a rep */
    control('topleft', function (d) {
      d.className += ' pm-panel pm-search';
      var input = el('input', null, d);
      input.type = 'search';
      input.placeholder = 'Find ' + unitName + ', rep or territory';
      input.setAttribute('aria-label', input.placeholder);
      var list = el('datalist', null, d);
      list.id = 'pm-search-list';
      input.setAttribute('list', list.id);
      T.label.forEach(function (l, t) { el('option', null, list).value = l; if (T.rep[t]) el('option', null, list).value = T.rep[t]; });
      var msg = el('div', 'pm-msg', d);
      function go() {
        var q = input.value.trim(), ql = q.toLowerCase();
        msg.textContent = '';
        if (!q) return;
        var f = byId[ql];
        if (f !== undefined) {
          map.fitBounds(polys[f].getBounds(), {maxZoom: Math.max(map.getZoom(), 10), padding: [40, 40]});
          highlight(terr[f]);
          selLine.setLatLngs(outline(function (g) { return g === f; }));
          popup.setLatLng(U.at[f]).setContent(terrPopup(terr[f], f)).openOn(map);
          return;
        }
        for (var t = 0; t < K; t++) {
          if (T.label[t].toLowerCase() === ql || (T.rep[t] && T.rep[t].toLowerCase().indexOf(ql) >= 0) ||
              (T.repId[t] && T.repId[t].toLowerCase() === ql)) { focusTerritory(t, true); return; }
        }
        msg.textContent = 'No ' + unitName + ', rep or territory matches \u201c' + q + '\u201d';
      }
      input.addEventListener('change', go);
    }).addTo(map);

    /* edit mode: select units (click or lasso), move them, undo, download plan.csv */
    var editBox, editBody, selInfo, target_, warnBox, undoBtn, lassoBtn;
    function changedCount() { var c = 0; for (var f = 0; f < n; f++) if (terr[f] !== orig[f]) c++; return c; }
    function toggleSelect(f) { if (selected[f]) delete selected[f]; else selected[f] = 1; drawSelection(); renderEdit(); }
    function selectedList() { return Object.keys(selected).map(Number); }
    function renderEdit() {
      var s = selectedList();
      selInfo.textContent = s.length ? s.length + ' ' + unitName + (s.length > 1 ? 's' : '') + ' selected' : 'Click ' + unitName + 's to select them, or use the lasso.';
      undoBtn.disabled = !undoStack.length;
    }
    function moveUnits(list, to, record) {
      var touched = {}, moved = [];
      list.forEach(function (f) {
        var from = terr[f];
        if (from === to) return;
        moved.push([f, from]);
        measures.forEach(function (m) { var v = U.v[m.key][f]; totals[m.key][from] -= v; totals[m.key][to] += v; });
        counts[from]--; counts[to]++;
        terr[f] = to;
        touched[from] = 1; touched[to] = 1;
        polys[f].setStyle(unitStyle(f));
      });
      Object.keys(touched).forEach(function (t) { piecesOf[t] = pieces(Number(t)); });
      if (record && moved.length) undoStack.push(moved);
      refresh(touched);
      return moved;
    }
    function refresh(touched) {
      allocateQuota();
      drawBorders();
      drawLinks();
      highlight(highlighted);
      renderTable();
      renderSummary();
      var warn = [];
      Object.keys(touched || {}).forEach(function (t) {
        if (piecesOf[t] > 1) warn.push(T.label[t] + ' is now in ' + piecesOf[t] + ' pieces');
        if (counts[t] === 0) warn.push(T.label[t] + ' has no ' + unitName + 's left');
      });
      if (warnBox) warnBox.textContent = warn.join('; ');
      if (editBox) renderEdit();
    }
    function undo() {
      var last = undoStack.pop();
      if (!last) return;
      var byFrom = {};
      last.forEach(function (m) { (byFrom[m[1]] = byFrom[m[1]] || []).push(m[0]); });
      Object.keys(byFrom).forEach(function (t) { moveUnits(byFrom[t], Number(t), false); });
      refresh({});
    }
    function csvCell(s) { s = String(s); return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
    function planCsv() {
      var lines = ['unit_id,territory'];
      for (var f = 0; f < n; f++) lines.push(csvCell(U.id[f]) + ',' + csvCell(T.label[terr[f]]));
      return lines.join('\n') + '\n';
    }
    function download() {
      var a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([planCsv()], {type: 'text/csv'}));
      a.download = 'plan.csv';
      document.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    }
    function lasso() {
      var pts = [], line = null, c = map.getContainer();
      map.dragging.disable();
      c.classList.add('pm-lasso');
      lassoBtn.classList.add('pm-active');
      function down(ev) { pts = [ev.latlng]; line = L.polyline(pts, {color: '#ff7b00', weight: 2, dashArray: '4 4', interactive: false}).addTo(map); }
      function move(ev) { if (line) { pts.push(ev.latlng); line.setLatLngs(pts); } }
      function up() {
        map.off('mousedown', down).off('mousemove', move).off('mouseup', up);
        map.dragging.enable();
        c.classList.remove('pm-lasso');
        lassoBtn.classList.remove('pm-active');
        if (line) map.removeLayer(line);
        if (pts.length < 3) return;
        for (var f = 0; f < n; f++) if (inside(U.at[f], pts)) selected[f] = 1;
        drawSelection();
        renderEdit();
      }
      map.on('mousedown', down).on('mousemove', move).on('mouseup', up);
    }
    function inside(p, ring) {
      var y = p[0], x = p[1], hit = false;
      for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        var yi = ring[i].lat, xi = ring[i].lng, yj = ring[j].lat, xj = ring[j].lng;
        if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) hit = !hit;
      }
      return hit;
    }
    if (!C) control('topleft', function (d) {
      d.className += ' pm-panel pm-edit';
      editBox = d;
      var btn = el('button', 'pm-toggle', d, '\u270E Edit plan');
      editBody = el('div', null, d);
      editBody.style.display = 'none';
      selInfo = el('div', null, editBody);
      var r1 = el('div', null, editBody);
      lassoBtn = el('button', null, r1, 'Lasso');
      lassoBtn.title = 'Drag around the ' + unitName + 's to select';
      el('button', null, r1, 'Clear').addEventListener('click', function () { selected = {}; drawSelection(); renderEdit(); });
      var r2 = el('div', null, editBody);
      el('span', null, r2, 'Move to ');
      target_ = el('select', null, r2);
      target_.setAttribute('aria-label', 'Move selected to territory');
      T.label.forEach(function (l, t) { var o = el('option', null, target_, l + (T.rep[t] ? ' \u00b7 ' + T.rep[t] : '')); o.value = t; });
      el('button', null, r2, 'Move').addEventListener('click', function () {
        moveUnits(selectedList(), Number(target_.value), true);
        selected = {};
        drawSelection();
        renderEdit();
      });
      var r3 = el('div', null, editBody);
      undoBtn = el('button', null, r3, 'Undo');
      undoBtn.addEventListener('click', undo);
      el('button', null, r3, 'Download plan.csv').addEventListener('click', download);
      warnBox = el('div', 'pm-warn', editBody);
      lassoBtn.addEventListener('click', lasso);
      btn.addEventListener('click', function () {
        editing = !editing;
        editBody.style.display = editing ? '' : 'none';
        btn.classList.toggle('pm-active', editing);
        if (!editing) { selected = {}; drawSelection(); }
        map.closePopup();
        renderEdit();
      });
    }).addTo(map);

    /* view: fitted to the data, clear of the panels on a wide screen */
    function fit() {
      var w = container.clientWidth, left = 10, right = 10;
      if (!narrow) {
        right += tableBox.offsetWidth + 10;
        if (left + right > w * 0.5) right = 10;
      }
      map.fitBounds(PM.bounds, {paddingTopLeft: [left, 10], paddingBottomRight: [right, 10], animate: false});
    }
    map.invalidateSize();
    fit();
    units.addTo(map);
    borders.addTo(map);
    renderTable();
    renderSummary();
    sizeLabels();
    requestAnimationFrame(function () { requestAnimationFrame(function () {
      sizeLabels();  /* again, where the labels ended up once the view settled */
      window.patchmapReady = performance.now();
      document.body.dataset.pmReady = '1';
    }); });
    window.pmApp = {map: map, terr: terr, planCsv: planCsv, totals: totals, quota: quota};
  };
})();
